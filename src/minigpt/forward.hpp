// forward
#pragma once
#include "api.hpp"
