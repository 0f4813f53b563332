// Device-side map from a padded region-major row to its model-order token (CONTRACT.md):
// full regions one block each, then the partial edge regions of all frames packed into
// edge blocks, text blocks before or after the video. Host-callable too, so a host program
// checks it against the contract (tests/oracles/region_map_check.cpp).
#pragma once
#include <cstdint>

#include "draftattn/drafting.h"

namespace draftattn {

struct RegionMap {
  int frames, height, width, region_h, region_w;
  int full_cols, full_regions, num_regions;
  int edge_per_frame;  // tokens of one frame outside its full regions
  int right_w;         // columns of the right-edge pieces (width % region_w)
  int right_tokens;    // tokens of one frame's right-edge pieces (they come first)
  int bottom_y;        // first row of the bottom-edge pieces
  int text_len, text_blocks;
  bool text_first;
  int64_t video_base;  // model token of video token 0
  int64_t text_base;   // model token of text token 0

  static RegionMap from(const RegionLayout& l) {
    RegionMap m;
    m.frames = l.frames;
    m.height = l.height;
    m.width = l.width;
    m.region_h = l.region_h;
    m.region_w = l.region_w;
    m.full_cols = l.full_cols();
    m.full_regions = l.full_regions();
    m.num_regions = l.num_regions();
    m.edge_per_frame = l.edge_tokens_per_frame();
    m.right_w = l.width - m.full_cols * l.region_w;
    m.right_tokens = l.full_rows() * l.region_h * m.right_w;
    m.bottom_y = l.full_rows() * l.region_h;
    m.text_len = l.text_len;
    m.text_blocks = l.text_blocks();
    m.text_first = l.text_first;
    m.video_base = l.text_first ? l.text_len : 0;
    m.text_base = l.text_first ? 0 : int64_t(l.frames) * l.height * l.width;
    return m;
  }

  enum class Kind { kText, kRegion, kEdge };

  // By value: std::min would bind a reference to kBlockSize, which device code cannot.
  __host__ __device__ static int smaller(int a, int b) { return a < b ? a : b; }

  // The rows of one block: `valid` of them hold tokens, the rest are zero padding.
  struct Block {
    int64_t first;  // text: token of row 0; region: token of its top-left corner; edge: stream position of row 0
    int valid;
    Kind kind;
    __host__ __device__ bool is_video() const { return kind != Kind::kText; }
  };

  __host__ __device__ Block block(int b) const {
    const bool is_text = text_first ? b < text_blocks : b >= num_regions;
    if (is_text) {
      const int t = text_first ? b : b - num_regions;
      return {text_base + int64_t(t) * kBlockSize, smaller(kBlockSize, text_len - t * kBlockSize), Kind::kText};
    }
    const int r = text_first ? b - text_blocks : b;
    if (r >= full_regions) {
      const int64_t first = int64_t(r - full_regions) * kBlockSize;
      const int64_t left = int64_t(frames) * edge_per_frame - first;
      return {first, int(left < kBlockSize ? left : kBlockSize), Kind::kEdge};
    }
    const int per_frame = full_regions / frames;
    const int f = r / per_frame;
    const int ry = (r - f * per_frame) / full_cols;
    const int rx = r - f * per_frame - ry * full_cols;
    const int64_t corner = video_base + (int64_t(f) * height + ry * region_h) * width + rx * region_w;
    return {corner, kBlockSize, Kind::kRegion};
  }

  // Model token of row `row` of block `blk`, or -1 for a padding row.
  __host__ __device__ int64_t token(const Block& blk, int row) const {
    if (row >= blk.valid) return -1;
    if (blk.kind == Kind::kText) return blk.first + row;
    if (blk.kind == Kind::kRegion) return blk.first + int64_t(row / region_w) * width + row % region_w;
    return edge_token(blk.first + row);
  }

  // Model token at position s of the edge stream: frame by frame, the right-edge pieces of
  // the full region rows, then the bottom-edge pieces left to right, row-major inside each.
  __host__ __device__ int64_t edge_token(int64_t s) const {
    const int f = int(s / edge_per_frame);
    int p = int(s - int64_t(f) * edge_per_frame);
    int y, x;
    if (p < right_tokens) {
      const int piece_tokens = region_h * right_w;
      const int piece = p / piece_tokens, i = p - piece * piece_tokens;
      y = piece * region_h + i / right_w;
      x = full_cols * region_w + i % right_w;
    } else {
      p -= right_tokens;
      const int piece_tokens = (height - bottom_y) * region_w;
      const int piece = p / piece_tokens, i = p - piece * piece_tokens;
      const int x0 = piece * region_w;
      const int piece_w = smaller(region_w, width - x0);
      y = bottom_y + i / piece_w;
      x = x0 + i % piece_w;
    }
    return video_base + (int64_t(f) * height + y) * width + x;
  }
};

}  // namespace draftattn
