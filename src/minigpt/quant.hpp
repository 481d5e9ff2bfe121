// quant
#pragma once
#include "api.hpp"
