// kernels
#pragma once
#include "api.hpp"
