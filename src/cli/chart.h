// Line charts as PNG files, without a graphics library: an RGB canvas, a
// 5x7 bitmap font, and a PNG encoder that stores the image uncompressed
// (zlib "stored" deflate blocks, CRC-32 per chunk, Adler-32 of the data).
#ifndef MEMMAMBA_CLI_CHART_H_
#define MEMMAMBA_CLI_CHART_H_

#include <cstdint>
#include <string>
#include <vector>

namespace memmamba_cli {

struct Rgb {
  uint8_t r, g, b;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background);
  int width() const { return width_; }
  int height() const { return height_; }
  void Set(int x, int y, Rgb c);
  void FillRect(int x, int y, int w, int h, Rgb c);
  // A line `thickness` pixels wide (square pen).
  void Line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1);
  // Text in the 5x7 font, each pixel drawn as scale x scale; (x, y) is the
  // top left corner. Characters outside printable ASCII are drawn as '?'.
  void Text(int x, int y, const std::string& text, Rgb c, int scale = 1);
  // The same, turned 90 degrees counter-clockwise (reads bottom to top);
  // (x, y) is the bottom left corner of the rotated text.
  void TextUp(int x, int y, const std::string& text, Rgb c, int scale = 1);
  static int TextWidth(const std::string& text, int scale = 1) {
    return text.empty() ? 0 : static_cast<int>(text.size()) * 6 * scale - scale;
  }
  static int TextHeight(int scale = 1) { return 7 * scale; }
  // The image as a PNG file's bytes (8-bit RGB, no interlace).
  std::string EncodePng() const;

 private:
  int width_, height_;
  std::vector<uint8_t> pixels_;  // RGB, row-major
};

struct Series {
  std::string name;
  std::vector<double> x, y;  // points in order of x
  Rgb color;
  int thickness = 2;
};

struct ChartSpec {
  std::string title;
  std::string x_label, y_label;
  bool log_x = true;          // x on a log2 scale
  bool y_percent = false;     // y is a fraction shown as 0..100%, fixed range
  std::vector<Series> series;
};

// Draws a chart (frame, grid, ticks and their labels, title, axis labels,
// the series with point markers, a legend) into the rectangle x, y, w, h.
void DrawChart(Canvas* canvas, int x, int y, int w, int h, const ChartSpec& spec);

// A palette of distinguishable colours.
Rgb SeriesColor(size_t i);

// "256", "4k", "1M": short labels for token counts.
std::string CountLabel(double v);

}  // namespace memmamba_cli

#endif  // MEMMAMBA_CLI_CHART_H_
