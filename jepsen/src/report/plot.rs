//! The two plots of the report, rendered by plotters into SVG strings that the page inlines:
//! latency of every client operation over time, and completions per second, both with the
//! fault windows shaded behind the data.
//!
//! plotters panics on empty or zero-width ranges, so every range here is widened to something
//! drawable first; an empty history gives empty axes with a note. Points are drawn in pixel
//! coordinates so that markers landing on the same pixel can be merged: that keeps the SVG of a
//! 50k-operation run small without changing what it looks like.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Completed, FaultWindow};
use crate::history::OpType;

/// Canvas of one plot, in pixels; the legend takes the right-hand [`LEGEND_W`].
const WIDTH: u32 = 1100;
const HEIGHT: u32 = 400;
const LEGEND_W: u32 = 200;
/// Beyond this many distinct markers, `ok` markers are thinned out (failures never are).
pub(super) const MAX_POINTS: usize = 20_000;
/// Beyond this many markers they are drawn smaller.
const DENSE: usize = 3_000;

const OK_COLOR: RGBColor = RGBColor(0x2e, 0x9e, 0x44);
const FAIL_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const INFO_COLOR: RGBColor = RGBColor(0xf0, 0xa2, 0x02);
const AXIS_TEXT: RGBColor = RGBColor(0x33, 0x33, 0x33);
/// Fault colours: none of them close to the green/red/amber of the outcomes.
const FAULT_PALETTE: [RGBColor; 8] = [
    RGBColor(0x6a, 0x3d, 0x9a),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x39, 0x3b, 0x79),
];
const FAULT_ALPHA: f64 = 0.16;
/// Outcomes in drawing order: the rare, interesting ones last so they sit on top.
const OUTCOMES: [OpType; 3] = [OpType::Ok, OpType::Info, OpType::Fail];

type PlotResult<T> = Result<T, String>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Both plots, ready to inline, and what the reader should know about them.
pub(super) struct Plots {
    pub latency_svg: PlotResult<String>,
    pub throughput_svg: PlotResult<String>,
    /// Set when markers were thinned out.
    pub latency_note: Option<String>,
    /// Width of a throughput bucket in seconds.
    pub bucket_s: f64,
}

/// What both plots share: the time axis and the fault colours.
struct Frame<'a> {
    x_end_s: f64,
    windows: &'a [FaultWindow],
    /// Distinct fault names in order of first appearance; the position picks colour and label row.
    fault_names: Vec<&'a str>,
}

pub(super) fn render(ops: &[Completed], windows: &[FaultWindow], last_ns: u64) -> Plots {
    let frame = Frame::new(windows, last_ns);
    let mut latency_note = None;
    let latency_svg = to_svg(|root| {
        latency_note = latency_chart(root, ops, &frame)?;
        Ok(())
    });
    let throughput_svg = to_svg(|root| throughput_chart(root, ops, &frame));
    Plots { latency_svg, throughput_svg, latency_note, bucket_s: bucket_width_s(frame.x_end_s) }
}

impl<'a> Frame<'a> {
    fn new(windows: &'a [FaultWindow], last_ns: u64) -> Frame<'a> {
        let end_ns = windows.iter().map(|w| w.end_ns).max().unwrap_or(0).max(last_ns);
        let mut fault_names: Vec<&str> = Vec::new();
        for w in windows {
            if !fault_names.contains(&w.name.as_str()) {
                fault_names.push(&w.name);
            }
        }
        Frame { x_end_s: positive_or(end_ns as f64 / 1e9, 1.0), windows, fault_names }
    }

    /// The fault's colour and its position among the fault names.
    fn fault_color(&self, name: &str) -> (RGBColor, usize) {
        let i = self.fault_names.iter().position(|n| *n == name).unwrap_or(0);
        (FAULT_PALETTE[i % FAULT_PALETTE.len()], i)
    }
}

/// Runs `draw` on a fresh SVG canvas and returns the SVG text.
fn to_svg(draw: impl FnOnce(&Area) -> PlotResult<()>) -> PlotResult<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn positive_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        fallback
    }
}

fn outcome_color(kind: OpType) -> RGBColor {
    match kind {
        OpType::Fail => FAIL_COLOR,
        OpType::Info => INFO_COLOR,
        _ => OK_COLOR,
    }
}

fn outcome_label(kind: OpType) -> &'static str {
    match kind {
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info (indeterminate)",
        OpType::Invoke => "invoke",
    }
}

/// Marker shapes, one per operation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    Circle,
    Triangle,
    Square,
    Diamond,
    Cross,
    Plus,
}

const SHAPES: [Shape; 6] = [Shape::Circle, Shape::Triangle, Shape::Square, Shape::Diamond, Shape::Cross, Shape::Plus];

/// Draws one marker of half-size `r` pixels centred on `(x, y)`.
fn draw_marker(area: &Area, shape: Shape, (x, y): (i32, i32), color: RGBAColor, r: i32) -> PlotResult<()> {
    let fill = ShapeStyle::from(color).filled();
    let line = ShapeStyle::from(color).stroke_width(2);
    match shape {
        Shape::Circle => area.draw(&Circle::new((x, y), r, fill)),
        Shape::Triangle => area.draw(&TriangleMarker::new((x, y), r + 1, fill)),
        Shape::Square => area.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], fill)),
        Shape::Diamond => {
            area.draw(&Polygon::new(vec![(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], fill))
        }
        Shape::Cross => area.draw(&Cross::new((x, y), r, line)),
        Shape::Plus => area
            .draw(&PathElement::new(vec![(x - r - 1, y), (x + r + 1, y)], line))
            .and_then(|_| area.draw(&PathElement::new(vec![(x, y - r - 1), (x, y + r + 1)], line))),
    }
    .map_err(err)
}

/// Splits a canvas into the chart on the left and the legend column on the right.
fn split<'a>(root: &Area<'a>) -> (Area<'a>, Area<'a>) {
    root.split_horizontally(WIDTH - LEGEND_W)
}

/// The latency axis in milliseconds, widened to whole decades so that a log axis always has
/// labelled ticks (plotters labels only powers of ten).
fn latency_range_ms(ops: &[Completed]) -> Range<f64> {
    let ms = ops.iter().map(latency_ms);
    let lo = ms.clone().fold(f64::INFINITY, f64::min);
    let hi = ms.fold(0.0, f64::max);
    if !lo.is_finite() {
        return 0.1..1000.0;
    }
    let lo = 10f64.powf(lo.log10().floor());
    let mut hi = 10f64.powf(hi.log10().ceil());
    if hi <= lo {
        hi = lo * 10.0;
    }
    // Just below the decade: plotters computes its first tick as 10^ceil(log10(lo)), which
    // float error can push one decade up, leaving the bottom of the axis unlabelled.
    lo * 0.999..hi
}

/// Latency in ms, floored at 1 µs: a log axis has no zero.
fn latency_ms(op: &Completed) -> f64 {
    (op.latency_ns() as f64 / 1e6).max(1e-3)
}

/// Axis labels without float noise or trailing zeros: `2`, `0.25`, `0.001`.
fn format_num(v: &f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Draws the latency scatter; returns a note when markers were thinned out.
/// The mesh both charts share: time on x, `y_desc` on y, numbers as [`format_num`], a light
/// grid and grey axis text.
fn house_mesh<'m, 'a, 'b, X, Y, DB>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
    y_desc: &str,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
    DB: DrawingBackend,
{
    mesh.x_desc("time since start (s)")
        .y_desc(y_desc)
        .x_label_formatter(&format_num)
        .y_label_formatter(&format_num)
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
        .light_line_style(RGBColor(0xf3, 0xf3, 0xf3))
        .label_style(("sans-serif", 13).into_font().color(&AXIS_TEXT))
        .axis_desc_style(("sans-serif", 14).into_font().color(&AXIS_TEXT))
}

fn latency_chart(root: &Area, ops: &[Completed], frame: &Frame) -> PlotResult<Option<String>> {
    let (left, legend) = split(root);
    let y = latency_range_ms(ops);
    let mut chart = ChartBuilder::on(&left)
        .margin(12)
        .margin_right(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..frame.x_end_s, y.clone().log_scale())
        .map_err(err)?;
    house_mesh(&mut chart.configure_mesh(), "latency (ms, log)").y_labels(12).draw().map_err(err)?;
    draw_windows(root, chart.plotting_area(), frame, y.start, y.end)?;

    let fnames: Vec<&str> = ops.iter().map(|o| o.f).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let shape_of = |f: &str| SHAPES[fnames.iter().position(|n| *n == f).unwrap_or(0) % SHAPES.len()];
    let (markers, note) = thin(pixel_markers(chart.plotting_area(), ops, &shape_of), ops.len());
    // Smaller, fainter markers when they crowd, so that overlap reads as density.
    let (r, alpha) = if markers.len() > DENSE { (2, 0.45) } else { (3, 0.6) };
    for (shape, kind, px) in markers {
        let alpha = if kind == OpType::Ok { alpha } else { 0.85 };
        draw_marker(root, shape, px, outcome_color(kind).mix(alpha), r)?;
    }
    if ops.is_empty() {
        centered_note(chart.plotting_area(), "no completed client operations")?;
    }

    let mut lg = Legend::new(&legend);
    lg.heading("outcome")?;
    for kind in OUTCOMES {
        lg.entry(outcome_label(kind), |a, p| draw_marker(a, Shape::Circle, p, outcome_color(kind).mix(0.85), 3))?;
    }
    if !fnames.is_empty() {
        lg.heading("operation")?;
        for f in &fnames {
            lg.entry(f, |a, p| draw_marker(a, shape_of(f), p, RGBColor(0x44, 0x44, 0x44).to_rgba(), 3))?;
        }
    }
    lg.faults(frame)?;
    Ok(note)
}

/// One marker to draw: its shape, outcome and pixel.
type Marker = (Shape, OpType, (i32, i32));

/// Maps operations to pixels, keeping one marker per (shape, outcome, pixel), in drawing order.
fn pixel_markers(
    area: &DrawingArea<SVGBackend, impl CoordTranslate<From = (f64, f64)>>,
    ops: &[Completed],
    shape_of: &dyn Fn(&str) -> Shape,
) -> Vec<Marker> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for kind in OUTCOMES {
        for op in ops.iter().filter(|o| o.outcome == kind) {
            let px = area.map_coordinate(&(op.invoke_ns as f64 / 1e9, latency_ms(op)));
            let m = (shape_of(op.f), kind, px);
            if seen.insert(m) {
                out.push(m);
            }
        }
    }
    out
}

/// Keeps at most [`MAX_POINTS`] markers. When fail/info markers are rare (at most a fifth of
/// the budget) they are all kept — a handful of timeouts during a partition is the point of the
/// plot — and the `ok` ones are sampled evenly; otherwise every outcome is sampled alike, so
/// the proportions on the page stay true. Returns the markers and a note for the page if any
/// were dropped.
fn thin(markers: Vec<Marker>, total_ops: usize) -> (Vec<Marker>, Option<String>) {
    let n = markers.len();
    if n <= MAX_POINTS {
        return (markers, None);
    }
    let not_ok = markers.iter().filter(|m| m.1 != OpType::Ok).count();
    let keep_rare = not_ok <= MAX_POINTS / 5;
    let step = if keep_rare { (n - not_ok).div_ceil(MAX_POINTS - not_ok) } else { n.div_ceil(MAX_POINTS) };
    let mut seen: BTreeMap<u8, usize> = BTreeMap::new();
    let kept: Vec<Marker> = markers
        .into_iter()
        .filter(|m| {
            if keep_rare && m.1 != OpType::Ok {
                return true;
            }
            let i = seen.entry(kind_key(m.1)).or_insert(0);
            *i += 1;
            (*i - 1).is_multiple_of(step)
        })
        .collect();
    let which = if keep_rare { "ok markers (every fail and info is drawn)" } else { "markers of each outcome" };
    let note = format!(
        "{total_ops} operations give {n} distinct markers: to keep the page light, one in {step} of the {which} \
         is drawn, {} in all.",
        kept.len()
    );
    (kept, Some(note))
}

/// Shades every fault window over the whole height of the plot and labels it with its name.
/// Labels of different fault names go on different rows; a label that would run into the
/// previous one on its row is left out (the legend still names the colour).
fn draw_windows<CT: CoordTranslate<From = (f64, f64)>>(
    root: &Area,
    plot: &DrawingArea<SVGBackend, CT>,
    frame: &Frame,
    y_lo: f64,
    y_hi: f64,
) -> PlotResult<()> {
    let (xr, yr) = plot.get_pixel_range();
    let mut row_end = [i32::MIN; 3];
    let font: TextStyle = ("sans-serif", 12).into_font().into();
    for w in frame.windows {
        let (color, idx) = frame.fault_color(&w.name);
        let x0 = plot.map_coordinate(&(w.start_ns as f64 / 1e9, y_hi)).0.clamp(xr.start, xr.end);
        let x1 = plot.map_coordinate(&(w.end_ns as f64 / 1e9, y_lo)).0.clamp(xr.start, xr.end);
        // At least 2 px so that a brief fault (a kill that restarts at once) is still seen.
        let x1 = x1.max(x0 + 2);
        root.draw(&Rectangle::new([(x0, yr.start), (x1, yr.end)], color.mix(FAULT_ALPHA).filled())).map_err(err)?;
        root.draw(&PathElement::new(vec![(x0, yr.start), (x0, yr.end)], color.mix(0.5))).map_err(err)?;
        let row = idx % row_end.len();
        let text_w = root.estimate_text_size(&w.name, &font).map_err(err)?.0 as i32;
        if x0 + 3 > row_end[row] && x0 + 3 + text_w < xr.end {
            let y = yr.start + 3 + 14 * row as i32;
            root.draw(&Text::new(w.name.clone(), (x0 + 3, y), font.color(&color))).map_err(err)?;
            row_end[row] = x0 + 3 + text_w + 6;
        }
    }
    Ok(())
}

fn centered_note<CT: CoordTranslate>(plot: &DrawingArea<SVGBackend, CT>, text: &str) -> PlotResult<()> {
    let (xr, yr) = plot.get_pixel_range();
    let style = ("sans-serif", 16).into_font().color(&RGBColor(0x88, 0x88, 0x88));
    let w = plot.estimate_text_size(text, &style).map_err(err)?.0 as i32;
    let abs = plot.strip_coord_spec();
    // `abs` is relative to the plot's own corner.
    abs.draw(&Text::new(text.to_string(), ((xr.end - xr.start - w) / 2, (yr.end - yr.start) / 2), style)).map_err(err)
}

/// At most this many throughput buckets: beyond ~3 hours the buckets widen past a second.
const MAX_BUCKETS: f64 = 10_000.0;

/// The width of a throughput bucket in whole seconds: 1 unless the run is very long.
fn bucket_width_s(x_end_s: f64) -> f64 {
    (x_end_s / MAX_BUCKETS).ceil().max(1.0)
}

/// Completions per bucket of [`bucket_width_s`] (by completion time), per outcome.
fn throughput_buckets(ops: &[Completed], x_end_s: f64) -> BTreeMap<u8, Vec<u64>> {
    let width_ns = bucket_width_s(x_end_s) * 1e9;
    let n = ((x_end_s * 1e9 / width_ns).ceil() as usize).max(1);
    let mut by_kind: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
    for op in ops {
        let counts = by_kind.entry(kind_key(op.outcome)).or_insert_with(|| vec![0; n]);
        let b = ((op.complete_ns as f64 / width_ns) as usize).min(n - 1);
        counts[b] += 1;
    }
    by_kind
}

fn kind_key(kind: OpType) -> u8 {
    OUTCOMES.iter().position(|k| *k == kind).unwrap_or(0) as u8
}

fn throughput_chart(root: &Area, ops: &[Completed], frame: &Frame) -> PlotResult<()> {
    let (left, legend) = split(root);
    let width = bucket_width_s(frame.x_end_s);
    let buckets = throughput_buckets(ops, frame.x_end_s);
    let peak = buckets.values().flatten().copied().max().unwrap_or(0);
    let y_end = (peak as f64 / width * 1.1).max(1.0);
    let mut chart = ChartBuilder::on(&left)
        .margin(12)
        .margin_right(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..frame.x_end_s, 0f64..y_end)
        .map_err(err)?;
    house_mesh(&mut chart.configure_mesh(), "completions / s").draw().map_err(err)?;
    draw_windows(root, chart.plotting_area(), frame, 0.0, y_end)?;

    for kind in OUTCOMES {
        let Some(counts) = buckets.get(&kind_key(kind)) else { continue };
        // Each bucket's count is drawn at the bucket's middle; the last bucket may be partial.
        let pts: Vec<(f64, f64)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (((i as f64 + 0.5) * width).min(frame.x_end_s), *c as f64 / width))
            .collect();
        let style = outcome_color(kind).stroke_width(2);
        chart.draw_series(LineSeries::new(pts.iter().copied(), style)).map_err(err)?;
        if pts.len() <= 30 {
            // Too few buckets for a line to read well on its own.
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, outcome_color(kind).filled()))).map_err(err)?;
        }
    }
    if ops.is_empty() {
        centered_note(chart.plotting_area(), "no completed client operations")?;
    }

    let mut lg = Legend::new(&legend);
    lg.heading("outcome")?;
    for kind in OUTCOMES {
        let c = outcome_color(kind);
        lg.entry(outcome_label(kind), |a, (x, y)| {
            a.draw(&PathElement::new(vec![(x - 7, y), (x + 7, y)], c.stroke_width(2))).map_err(err)
        })?;
    }
    lg.faults(frame)
}

/// A legend drawn down the right-hand column, outside the data, one entry per line.
struct Legend<'a, 'b> {
    area: &'a Area<'b>,
    y: i32,
}

impl<'a, 'b> Legend<'a, 'b> {
    const LINE: i32 = 19;

    fn new(area: &'a Area<'b>) -> Self {
        Legend { area, y: 16 }
    }

    fn full(&self) -> bool {
        self.y + Self::LINE > self.area.dim_in_pixel().1 as i32 - 8
    }

    fn heading(&mut self, text: &str) -> PlotResult<()> {
        if self.full() {
            return Ok(());
        }
        let style = ("sans-serif", 13).into_font().style(FontStyle::Bold).color(&AXIS_TEXT);
        self.area.draw(&Text::new(text.to_string(), (6, self.y), style)).map_err(err)?;
        self.y += Self::LINE;
        Ok(())
    }

    /// One entry: `swatch` draws the symbol centred on the point it is given.
    fn entry(&mut self, label: &str, swatch: impl Fn(&Area, (i32, i32)) -> PlotResult<()>) -> PlotResult<()> {
        if self.full() {
            return Ok(());
        }
        swatch(self.area, (18, self.y + 6))?;
        let style = ("sans-serif", 13).into_font().color(&AXIS_TEXT);
        self.area.draw(&Text::new(label.to_string(), (34, self.y), style)).map_err(err)?;
        self.y += Self::LINE;
        Ok(())
    }

    fn faults(&mut self, frame: &Frame) -> PlotResult<()> {
        if frame.fault_names.is_empty() {
            return Ok(());
        }
        self.heading("fault (shaded)")?;
        for name in &frame.fault_names {
            let (color, _) = frame.fault_color(name);
            self.entry(name, |a, (x, y)| {
                a.draw(&Rectangle::new([(x - 8, y - 6), (x + 8, y + 6)], color.mix(FAULT_ALPHA * 2.0).filled()))
                    .map_err(err)
            })?;
        }
        Ok(())
    }
}
