#include "sparse_attn_launch.cuh"

DRAFTATTN_INSTANTIATE_SPARSE_ATTN(cutlass::half_t, 64)
