// A hand-drawn, approximate outline of Hanoi: city limits, rivers, lakes, district names.
// Coordinates are [lat, lon], written by hand at roughly 1 km accuracy; no map tiles.

export const CITY_LIMITS = [
  [21.385, 105.83], [21.36, 105.92], [21.27, 105.95], [21.2, 105.93], [21.12, 105.98],
  [21.09, 106.02], [21.0, 106.02], [20.93, 105.98], [20.85, 105.96], [20.75, 105.98],
  [20.62, 106.01], [20.56, 105.93], [20.55, 105.8], [20.56, 105.72], [20.63, 105.65],
  [20.75, 105.6], [20.85, 105.55], [20.93, 105.48], [21.0, 105.4], [21.03, 105.3],
  [21.1, 105.28], [21.2, 105.3], [21.25, 105.36], [21.21, 105.46], [21.18, 105.6],
  [21.17, 105.67], [21.22, 105.7], [21.26, 105.72], [21.3, 105.76], [21.36, 105.78],
];

// the inner (urban) districts, roughly: the ring the traffic cameras are densest in
export const URBAN_CORE = [
  [21.09, 105.77], [21.095, 105.83], [21.075, 105.87], [21.06, 105.93], [21.02, 105.95],
  [20.97, 105.9], [20.94, 105.86], [20.94, 105.78], [20.96, 105.74], [21.0, 105.73],
  [21.05, 105.74],
];

export const RIVERS = [
  {
    name: "Sông Hồng (Red River)",
    width: 5,
    path: [
      [21.3, 105.42], [21.22, 105.47], [21.17, 105.5], [21.16, 105.57], [21.13, 105.63],
      [21.12, 105.68], [21.1, 105.74], [21.1, 105.78], [21.085, 105.82], [21.06, 105.845],
      [21.043, 105.858], [21.03, 105.862], [21.0, 105.878], [20.985, 105.905], [20.95, 105.92],
      [20.9, 105.93], [20.85, 105.935], [20.78, 105.95], [20.7, 105.97], [20.62, 106.0],
      [20.55, 106.02],
    ],
  },
  {
    name: "Sông Đuống",
    width: 3,
    path: [[21.07, 105.865], [21.07, 105.92], [21.08, 105.96], [21.07, 106.02], [21.07, 106.1]],
  },
  {
    name: "Sông Đà",
    width: 3,
    path: [[20.98, 105.33], [21.05, 105.33], [21.13, 105.3], [21.2, 105.32], [21.25, 105.36]],
  },
  {
    name: "Sông Tô Lịch",
    width: 1.5,
    path: [
      [21.055, 105.8], [21.04, 105.8], [21.02, 105.805], [21.0, 105.815], [20.985, 105.82],
      [20.97, 105.83], [20.955, 105.84], [20.94, 105.845],
    ],
  },
];

function ellipse(lat, lon, dLat, dLon, n = 20) {
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const t = (2 * Math.PI * i) / n;
    out.push([lat + dLat * Math.sin(t), lon + dLon * Math.cos(t)]);
  }
  return out;
}

export const LAKES = [
  { name: "Hồ Tây", path: ellipse(21.056, 105.819, 0.011, 0.013) },
  { name: "Hồ Hoàn Kiếm", path: ellipse(21.0288, 105.8524, 0.0022, 0.0011) },
  { name: "Hồ Trúc Bạch", path: ellipse(21.046, 105.838, 0.0018, 0.0028) },
];

// district name, centre; core = urban district (labels shown when zoomed in)
export const DISTRICTS = [
  ["Hoàn Kiếm", 21.0285, 105.852, true], ["Ba Đình", 21.036, 105.822, true],
  ["Đống Đa", 21.013, 105.827, true], ["Hai Bà Trưng", 21.006, 105.858, true],
  ["Tây Hồ", 21.075, 105.815, true], ["Cầu Giấy", 21.031, 105.792, true],
  ["Thanh Xuân", 20.994, 105.81, true], ["Hoàng Mai", 20.974, 105.863, true],
  ["Long Biên", 21.047, 105.892, true], ["Bắc Từ Liêm", 21.071, 105.762, true],
  ["Nam Từ Liêm", 21.012, 105.762, true], ["Hà Đông", 20.965, 105.77, true],
  ["Thanh Trì", 20.935, 105.84, false], ["Gia Lâm", 21.02, 105.94, false],
  ["Đông Anh", 21.14, 105.85, false], ["Sóc Sơn", 21.27, 105.84, false],
  ["Mê Linh", 21.19, 105.72, false], ["Sơn Tây", 21.13, 105.5, false],
  ["Ba Vì", 21.15, 105.39, false], ["Phúc Thọ", 21.1, 105.57, false],
  ["Đan Phượng", 21.09, 105.67, false], ["Hoài Đức", 21.03, 105.7, false],
  ["Quốc Oai", 20.99, 105.63, false], ["Thạch Thất", 21.05, 105.56, false],
  ["Chương Mỹ", 20.88, 105.67, false], ["Thanh Oai", 20.86, 105.77, false],
  ["Thường Tín", 20.84, 105.87, false], ["Phú Xuyên", 20.73, 105.91, false],
  ["Ứng Hòa", 20.72, 105.77, false], ["Mỹ Đức", 20.68, 105.74, false],
];

// the view a city without sensors starts from: the urban districts
export const DEFAULT_BOUNDS = { minLat: 20.94, maxLat: 21.1, minLon: 105.73, maxLon: 105.95 };
