// Device-side map from a padded region-major row to its model-order token (CONTRACT.md).
#pragma once
#include <cstdint>

#include "draftattn/drafting.h"

namespace draftattn {

struct RegionMap {
  int frames, height, width, region_h, region_w;
  int regions_y, regions_x, num_regions;
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
    m.regions_y = l.regions_y();
    m.regions_x = l.regions_x();
    m.num_regions = l.num_regions();
    m.text_len = l.text_len;
    m.text_blocks = l.text_blocks();
    m.text_first = l.text_first;
    m.video_base = l.text_first ? l.text_len : 0;
    m.text_base = l.text_first ? 0 : int64_t(l.frames) * l.height * l.width;
    return m;
  }

  // The rows of one block: `valid` of them hold tokens, the rest are zero padding.
  struct Block {
    int64_t first_token;  // text: token of row 0; region: token of its top-left corner
    int valid;
    int valid_w;          // region: tokens per region row (row-major inside); text: 0
  };

  __device__ Block block(int b) const {
    const bool is_text = text_first ? b < text_blocks : b >= num_regions;
    if (is_text) {
      const int t = text_first ? b : b - num_regions;
      const int valid = min(kBlockSize, text_len - t * kBlockSize);
      return {text_base + int64_t(t) * kBlockSize, valid, 0};
    }
    const int r = text_first ? b - text_blocks : b;
    const int per_frame = regions_y * regions_x;
    const int f = r / per_frame;
    const int ry = (r % per_frame) / regions_x;
    const int rx = r % regions_x;
    const int y0 = ry * region_h, x0 = rx * region_w;
    const int vh = min(region_h, height - y0), vw = min(region_w, width - x0);
    const int64_t corner = video_base + (int64_t(f) * height + y0) * width + x0;
    return {corner, vh * vw, vw};
  }

  // Model token of row `row` of block `blk`, or -1 for a padding row.
  __device__ int64_t token(const Block& blk, int row) const {
    if (row >= blk.valid) return -1;
    if (blk.valid_w == 0) return blk.first_token + row;
    return blk.first_token + int64_t(row / blk.valid_w) * width + row % blk.valid_w;
  }

  // Block number of region r (text_first shifts regions behind the text blocks).
  __device__ int region_block(int r) const { return text_first ? r + text_blocks : r; }
};

}  // namespace draftattn
