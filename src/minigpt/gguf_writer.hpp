// gguf_writer
#pragma once
#include "gguf.hpp"
