#include <cutlass/float8.h>

#include "sparse_attn_launch.cuh"

DRAFTATTN_INSTANTIATE_SPARSE_ATTN(cutlass::float_e4m3_t, 128)
