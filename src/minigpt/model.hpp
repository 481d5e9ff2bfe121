// model
#pragma once
#include "api.hpp"
