// Line charts as PNG files: canvas, 5x7 font, PNG encoder, chart layout.
#include "chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include "cli.h"

namespace memmamba_cli {
namespace {

// The classic 5x7 LCD font, printable ASCII 0x20..0x7e: 5 columns per
// character, bit 0 of a column is its top pixel; bit 7 is the descender row
// of g, j, p, q and y.
const uint8_t kFont[95][5] = {
    {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5f, 0x00, 0x00},  //   !
    {0x00, 0x07, 0x00, 0x07, 0x00}, {0x14, 0x7f, 0x14, 0x7f, 0x14},  // " #
    {0x24, 0x2a, 0x7f, 0x2a, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},  // $ %
    {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00},  // & '
    {0x00, 0x1c, 0x22, 0x41, 0x00}, {0x00, 0x41, 0x22, 0x1c, 0x00},  // ( )
    {0x08, 0x2a, 0x1c, 0x2a, 0x08}, {0x08, 0x08, 0x3e, 0x08, 0x08},  // * +
    {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08},  // , -
    {0x00, 0x60, 0x60, 0x00, 0x00}, {0x20, 0x10, 0x08, 0x04, 0x02},  // . /
    {0x3e, 0x51, 0x49, 0x45, 0x3e}, {0x00, 0x42, 0x7f, 0x40, 0x00},  // 0 1
    {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4b, 0x31},  // 2 3
    {0x18, 0x14, 0x12, 0x7f, 0x10}, {0x27, 0x45, 0x45, 0x45, 0x39},  // 4 5
    {0x3c, 0x4a, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},  // 6 7
    {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1e},  // 8 9
    {0x00, 0x36, 0x36, 0x00, 0x00}, {0x00, 0x56, 0x36, 0x00, 0x00},  // : ;
    {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},  // < =
    {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06},  // > ?
    {0x32, 0x49, 0x79, 0x41, 0x3e}, {0x7e, 0x11, 0x11, 0x11, 0x7e},  // @ A
    {0x7f, 0x49, 0x49, 0x49, 0x36}, {0x3e, 0x41, 0x41, 0x41, 0x22},  // B C
    {0x7f, 0x41, 0x41, 0x22, 0x1c}, {0x7f, 0x49, 0x49, 0x49, 0x41},  // D E
    {0x7f, 0x09, 0x09, 0x09, 0x01}, {0x3e, 0x41, 0x49, 0x49, 0x7a},  // F G
    {0x7f, 0x08, 0x08, 0x08, 0x7f}, {0x00, 0x41, 0x7f, 0x41, 0x00},  // H I
    {0x20, 0x40, 0x41, 0x3f, 0x01}, {0x7f, 0x08, 0x14, 0x22, 0x41},  // J K
    {0x7f, 0x40, 0x40, 0x40, 0x40}, {0x7f, 0x02, 0x0c, 0x02, 0x7f},  // L M
    {0x7f, 0x04, 0x08, 0x10, 0x7f}, {0x3e, 0x41, 0x41, 0x41, 0x3e},  // N O
    {0x7f, 0x09, 0x09, 0x09, 0x06}, {0x3e, 0x41, 0x51, 0x21, 0x5e},  // P Q
    {0x7f, 0x09, 0x19, 0x29, 0x46}, {0x46, 0x49, 0x49, 0x49, 0x31},  // R S
    {0x01, 0x01, 0x7f, 0x01, 0x01}, {0x3f, 0x40, 0x40, 0x40, 0x3f},  // T U
    {0x1f, 0x20, 0x40, 0x20, 0x1f}, {0x3f, 0x40, 0x38, 0x40, 0x3f},  // V W
    {0x63, 0x14, 0x08, 0x14, 0x63}, {0x07, 0x08, 0x70, 0x08, 0x07},  // X Y
    {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7f, 0x41, 0x41, 0x00},  // Z [
    {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7f, 0x00},  // \ ]
    {0x04, 0x02, 0x01, 0x02, 0x04}, {0x40, 0x40, 0x40, 0x40, 0x40},  // ^ _
    {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},  // ` a
    {0x7f, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20},  // b c
    {0x38, 0x44, 0x44, 0x48, 0x7f}, {0x38, 0x54, 0x54, 0x54, 0x18},  // d e
    {0x08, 0x7e, 0x09, 0x01, 0x02}, {0x18, 0xa4, 0xa4, 0xa4, 0x7c},  // f g
    {0x7f, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7d, 0x40, 0x00},  // h i
    {0x40, 0x80, 0x84, 0x7d, 0x00}, {0x7f, 0x10, 0x28, 0x44, 0x00},  // j k
    {0x00, 0x41, 0x7f, 0x40, 0x00}, {0x7c, 0x04, 0x18, 0x04, 0x78},  // l m
    {0x7c, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38},  // n o
    {0xfc, 0x24, 0x24, 0x24, 0x18}, {0x18, 0x24, 0x24, 0x18, 0xfc},  // p q
    {0x7c, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},  // r s
    {0x04, 0x3f, 0x44, 0x40, 0x20}, {0x3c, 0x40, 0x40, 0x20, 0x7c},  // t u
    {0x1c, 0x20, 0x40, 0x20, 0x1c}, {0x3c, 0x40, 0x30, 0x40, 0x3c},  // v w
    {0x44, 0x28, 0x10, 0x28, 0x44}, {0x1c, 0xa0, 0xa0, 0xa0, 0x7c},  // x y
    {0x44, 0x64, 0x54, 0x4c, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00},  // z {
    {0x00, 0x00, 0x7f, 0x00, 0x00}, {0x00, 0x41, 0x36, 0x08, 0x00},  // | }
    {0x02, 0x01, 0x02, 0x04, 0x02},                                  // ~
};

const uint8_t* Glyph(char ch) {
  const unsigned char c = static_cast<unsigned char>(ch);
  return kFont[(c >= 0x20 && c <= 0x7e) ? c - 0x20 : '?' - 0x20];
}

void PutU32(std::string* out, uint32_t v) {
  const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  out->append(b, 4);
}

void PutChunk(std::string* png, const char* type, const std::string& data) {
  PutU32(png, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  png->append(body);
  PutU32(png, Crc32(body.data(), body.size()));
}

const Rgb kBlack = {0, 0, 0};
const Rgb kGrid = {225, 225, 225};
const Rgb kAxis = {60, 60, 60};
const Rgb kText = {30, 30, 30};
const Rgb kWhite = {255, 255, 255};

// A "nice" step (1, 2 or 5 times a power of ten) near range / target.
double NiceStep(double range, int target) {
  const double raw = range / target;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

std::string TickLabel(double v, double step, bool percent) {
  char buf[32];
  if (percent) {
    std::snprintf(buf, sizeof buf, "%.0f%%", v * 100);
    return buf;
  }
  int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  if (decimals > 6) decimals = 6;
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

Canvas::Canvas(int width, int height, Rgb background)
    : width_(width), height_(height), pixels_(static_cast<size_t>(width) * height * 3) {
  for (size_t i = 0; i < pixels_.size(); i += 3) {
    pixels_[i] = background.r, pixels_[i + 1] = background.g, pixels_[i + 2] = background.b;
  }
}

void Canvas::Set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  uint8_t* p = &pixels_[(static_cast<size_t>(y) * width_ + x) * 3];
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

void Canvas::FillRect(int x, int y, int w, int h, Rgb c) {
  for (int j = y; j < y + h; ++j) {
    for (int i = x; i < x + w; ++i) Set(i, j, c);
  }
}

void Canvas::Line(int x0, int y0, int x1, int y1, Rgb c, int thickness) {
  // Bresenham, stamping a square pen at every step.
  const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
  const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  const int lo = -(thickness - 1) / 2;
  while (true) {
    FillRect(x0 + lo, y0 + lo, thickness, thickness, c);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

void Canvas::Text(int x, int y, const std::string& text, Rgb c, int scale) {
  for (size_t k = 0; k < text.size(); ++k) {
    const uint8_t* g = Glyph(text[k]);
    const int gx = x + static_cast<int>(k) * 6 * scale;
    for (int col = 0; col < 5; ++col) {
      for (int row = 0; row < 8; ++row) {
        if (g[col] & (1 << row)) FillRect(gx + col * scale, y + row * scale, scale, scale, c);
      }
    }
  }
}

void Canvas::TextUp(int x, int y, const std::string& text, Rgb c, int scale) {
  // Rotated counter-clockwise: the text's x axis runs up the canvas and its
  // rows (top to bottom) run left to right.
  for (size_t k = 0; k < text.size(); ++k) {
    const uint8_t* g = Glyph(text[k]);
    const int gy = y - static_cast<int>(k) * 6 * scale;
    for (int col = 0; col < 5; ++col) {
      for (int row = 0; row < 8; ++row) {
        if (g[col] & (1 << row)) {
          FillRect(x + row * scale, gy - (col + 1) * scale, scale, scale, c);
        }
      }
    }
  }
}

std::string Canvas::EncodePng() const {
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  PutU32(&ihdr, static_cast<uint32_t>(width_));
  PutU32(&ihdr, static_cast<uint32_t>(height_));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, deflate, filter 0, no interlace
  PutChunk(&png, "IHDR", ihdr);

  // The image data: each row is a filter byte (0: none) and its pixels.
  std::string raw;
  raw.reserve(static_cast<size_t>(height_) * (1 + 3 * width_));
  for (int y = 0; y < height_; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(&pixels_[static_cast<size_t>(y) * width_ * 3]),
               static_cast<size_t>(width_) * 3);
  }
  // zlib stream of stored (uncompressed) deflate blocks of at most 65535 bytes.
  std::string z("\x78\x01", 2);
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, raw.size() - pos);
    const bool final = pos + n == raw.size();
    z.push_back(final ? '\x01' : '\x00');
    const uint16_t len = static_cast<uint16_t>(n), nlen = static_cast<uint16_t>(~len);
    const char hdr[4] = {char(len & 0xff), char(len >> 8), char(nlen & 0xff), char(nlen >> 8)};
    z.append(hdr, 4);
    z.append(raw, pos, n);
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;  // Adler-32
  for (unsigned char ch : raw) {
    a = (a + ch) % 65521;
    b = (b + a) % 65521;
  }
  PutU32(&z, (b << 16) | a);
  PutChunk(&png, "IDAT", z);
  PutChunk(&png, "IEND", "");
  return png;
}

Rgb SeriesColor(size_t i) {
  static const Rgb kPalette[] = {{31, 119, 180}, {214, 39, 40},  {44, 160, 44},
                                 {255, 127, 14}, {148, 103, 189}, {140, 86, 75},
                                 {227, 119, 194}, {127, 127, 127}, {188, 189, 34},
                                 {23, 190, 207}};
  return kPalette[i % (sizeof kPalette / sizeof kPalette[0])];
}

std::string CountLabel(double v) {
  char buf[32];
  const double k = 1024, m = 1024 * 1024;
  if (v >= m && std::fmod(v, m) == 0) std::snprintf(buf, sizeof buf, "%.0fM", v / m);
  else if (v >= k && std::fmod(v, k) == 0) std::snprintf(buf, sizeof buf, "%.0fk", v / k);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

void DrawChart(Canvas* canvas, int x, int y, int w, int h, const ChartSpec& spec) {
  // Ranges over every finite point.
  double x_min = INFINITY, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;
  std::set<double> xs;
  for (const Series& s : spec.series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || !(s.x[i] > 0 || !spec.log_x)) continue;
      x_min = std::min(x_min, s.x[i]), x_max = std::max(x_max, s.x[i]);
      y_min = std::min(y_min, s.y[i]), y_max = std::max(y_max, s.y[i]);
      xs.insert(s.x[i]);
    }
  }
  if (xs.empty()) x_min = 1, x_max = 2, y_min = 0, y_max = 1;
  auto fx = [&](double v) { return spec.log_x ? std::log2(v) : v; };
  double lx0 = fx(x_min), lx1 = fx(x_max);
  const double pad = lx1 > lx0 ? (lx1 - lx0) * 0.06 : 0.5;
  lx0 -= pad, lx1 += pad;
  double y_step;
  if (spec.y_percent) {
    y_min = 0, y_max = 1, y_step = 0.25;
  } else {
    if (y_max - y_min < 1e-9 * std::max(1.0, std::fabs(y_max))) {
      const double d = std::max(0.5, std::fabs(y_max) * 0.1);
      y_min -= d, y_max += d;
    }
    y_step = NiceStep(y_max - y_min, 5);
    y_min = std::floor(y_min / y_step) * y_step;
    y_max = std::ceil(y_max / y_step) * y_step;
  }

  // Layout: title on top, legend on the right, tick labels left and below.
  int legend_w = 0;
  for (const Series& s : spec.series) {
    legend_w = std::max(legend_w, Canvas::TextWidth(s.name) + 34);
  }
  int label_w = 0;
  for (double v = y_min; v <= y_max + y_step * 1e-6; v += y_step) {
    label_w = std::max(label_w, Canvas::TextWidth(TickLabel(v, y_step, spec.y_percent)));
  }
  const int px0 = x + 22 + label_w + 8;
  const int px1 = x + w - 16 - legend_w;
  const int py0 = y + 40;
  const int py1 = y + h - 44;
  auto sx = [&](double v) {
    return px0 + static_cast<int>(std::lround((fx(v) - lx0) / (lx1 - lx0) * (px1 - px0)));
  };
  auto sy = [&](double v) {
    return py1 - static_cast<int>(std::lround((v - y_min) / (y_max - y_min) * (py1 - py0)));
  };

  canvas->Text(x + (w - Canvas::TextWidth(spec.title, 2)) / 2, y + 10, spec.title, kText, 2);

  // Horizontal grid and y ticks.
  for (double v = y_min; v <= y_max + y_step * 1e-6; v += y_step) {
    const int py = sy(v);
    canvas->Line(px0, py, px1, py, kGrid);
    canvas->Line(px0 - 4, py, px0, py, kAxis);
    const std::string label = TickLabel(v, y_step, spec.y_percent);
    canvas->Text(px0 - 7 - Canvas::TextWidth(label), py - 3, label, kText);
  }
  // x ticks: the measured values when they fit, else powers of two.
  std::vector<double> ticks(xs.begin(), xs.end());
  bool fits = ticks.size() <= 16;
  for (size_t i = 1; fits && i < ticks.size(); ++i) {
    const int gap = sx(ticks[i]) - sx(ticks[i - 1]);
    const int need = (Canvas::TextWidth(CountLabel(ticks[i])) +
                      Canvas::TextWidth(CountLabel(ticks[i - 1]))) / 2 + 6;
    if (gap < need) fits = false;
  }
  if (!fits && spec.log_x) {
    ticks.clear();
    const int e0 = static_cast<int>(std::ceil(lx0)), e1 = static_cast<int>(std::floor(lx1));
    const int stride = std::max(1, (e1 - e0 + 1) / 10);
    for (int e = e0; e <= e1; e += stride) ticks.push_back(std::ldexp(1.0, e));
  }
  for (double v : ticks) {
    const int px = sx(v);
    canvas->Line(px, py0, px, py1, kGrid);
    canvas->Line(px, py1, px, py1 + 4, kAxis);
    const std::string label = CountLabel(v);
    canvas->Text(px - Canvas::TextWidth(label) / 2, py1 + 8, label, kText);
  }
  // Frame.
  canvas->Line(px0, py0, px1, py0, kAxis);
  canvas->Line(px0, py1, px1, py1, kAxis);
  canvas->Line(px0, py0, px0, py1, kAxis);
  canvas->Line(px1, py0, px1, py1, kAxis);
  // Axis labels.
  std::string x_label = spec.x_label + (spec.log_x ? " (log scale)" : "");
  canvas->Text(px0 + (px1 - px0 - Canvas::TextWidth(x_label)) / 2, py1 + 24, x_label, kText);
  canvas->TextUp(x + 6, py0 + (py1 - py0 + Canvas::TextWidth(spec.y_label)) / 2, spec.y_label,
                 kText);
  // Series: lines, then point markers on top.
  for (const Series& s : spec.series) {
    int last_x = 0, last_y = 0;
    bool have_last = false;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (spec.log_x && !(s.x[i] > 0))) {
        have_last = false;
        continue;
      }
      const int cx = sx(s.x[i]), cy = sy(s.y[i]);
      if (have_last) canvas->Line(last_x, last_y, cx, cy, s.color, s.thickness);
      canvas->FillRect(cx - 2, cy - 2, 5, 5, s.color);
      last_x = cx, last_y = cy, have_last = true;
    }
  }
  // Legend.
  const int lx = px1 + 12;
  int ly = py0 + 4;
  if (!spec.series.empty()) {
    canvas->FillRect(lx - 4, py0, legend_w + 2, static_cast<int>(spec.series.size()) * 16 + 8,
                     kWhite);
  }
  for (const Series& s : spec.series) {
    canvas->Line(lx, ly + 3, lx + 20, ly + 3, s.color, s.thickness);
    canvas->FillRect(lx + 8, ly + 1, 5, 5, s.color);
    canvas->Text(lx + 26, ly, s.name, kBlack);
    ly += 16;
  }
}

}  // namespace memmamba_cli
