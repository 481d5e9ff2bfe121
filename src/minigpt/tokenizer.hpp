// tokenizer
#pragma once
#include "api.hpp"
