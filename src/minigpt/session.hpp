// session
#pragma once
#include "api.hpp"
