#include "sparse_attn_launch.cuh"

DRAFTATTN_INSTANTIATE_SPARSE_ATTN(cutlass::bfloat16_t, 128)
