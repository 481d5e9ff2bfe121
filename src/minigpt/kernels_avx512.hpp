// kernels_avx512
#pragma once
#include "api.hpp"
