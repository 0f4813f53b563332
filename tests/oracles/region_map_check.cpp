// Host check of the device-side region map (csrc/drafting/region_geometry.cuh), which the
// layout, pooling and fp8 kernels use to find each padded region-major row's token. For
// many layouts it compares RegionMap::token for every row of every block with the rows
// enumerated here straight from docs/CONTRACT.md: text blocks, then (or before them) each
// frame's full regions in region order, then the tokens of the partial regions of all
// frames, in region order, packed into 128-row edge blocks.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "../../csrc/drafting/region_geometry.cuh"

namespace {

using draftattn::kBlockSize;

// Model-order token of every padded row, -1 for padding.
std::vector<long> rows_by_contract(const draftattn::RegionLayout& l) {
  const long video_tokens = long(l.frames) * l.height * l.width;
  std::vector<long> text, full, edge;
  const long text0 = l.text_first ? 0 : video_tokens;
  const long video0 = l.text_first ? l.text_len : 0;
  for (long t = 0; t < l.text_len; ++t) text.push_back(text0 + t);
  for (int f = 0; f < l.frames; ++f) {
    for (int y0 = 0; y0 < l.height; y0 += l.region_h) {
      for (int x0 = 0; x0 < l.width; x0 += l.region_w) {
        const int y1 = std::min(l.height, y0 + l.region_h), x1 = std::min(l.width, x0 + l.region_w);
        const bool is_full = (y1 - y0) * (x1 - x0) == kBlockSize;
        for (int y = y0; y < y1; ++y)
          for (int x = x0; x < x1; ++x) (is_full ? full : edge).push_back(video0 + (long(f) * l.height + y) * l.width + x);
      }
    }
  }
  auto pad = [](std::vector<long> v) {
    v.resize((v.size() + kBlockSize - 1) / kBlockSize * kBlockSize, -1);
    return v;
  };
  std::vector<long> video = full;
  for (long token : pad(edge)) video.push_back(token);
  std::vector<long> first = l.text_first ? pad(text) : video, second = l.text_first ? video : pad(text);
  first.insert(first.end(), second.begin(), second.end());
  return first;
}

}  // namespace

int main() {
  long layouts = 0, rows = 0, mismatches = 0;
  const int regions[][2] = {{8, 16}, {16, 8}, {4, 32}};
  for (int frames : {1, 2, 3})
    for (int height : {1, 3, 8, 9, 16, 30, 45})
      for (int width : {1, 5, 16, 17, 45, 52, 80})
        for (const auto& region : regions)
          for (int text_len : {0, 77, 128, 300})
            for (bool text_first : {false, true}) {
              const draftattn::RegionLayout l{frames, height, width, region[0], region[1], text_len, text_first};
              const std::vector<long> expected = rows_by_contract(l);
              const draftattn::RegionMap map = draftattn::RegionMap::from(l);
              if (long(expected.size()) != long(l.num_blocks()) * kBlockSize) {
                std::printf("block count differs: %d x %d x %d region %dx%d text %d: %d blocks, contract %ld rows\n",
                            frames, height, width, region[0], region[1], text_len, l.num_blocks(), long(expected.size()));
                ++mismatches;
                continue;
              }
              for (int b = 0; b < l.num_blocks(); ++b) {
                const draftattn::RegionMap::Block blk = map.block(b);
                for (int r = 0; r < kBlockSize; ++r, ++rows) mismatches += map.token(blk, r) != expected[b * kBlockSize + r];
              }
              ++layouts;
            }
  std::printf("layouts: %ld, rows: %ld, mismatches: %ld\n", layouts, rows, mismatches);
  return mismatches == 0 ? 0 : 1;
}
