//! Charts for the dashboards, drawn with `plotters` into SVG text (no window, no system
//! fonts: text is SVG `<text>`, laid out by the viewer).
//!
//! Every chart is an `<svg>` with a `viewBox` and no fixed width or height, so it scales
//! crisply to any size; it carries `role="img"`, a `<title>` and a `<desc>` for screen
//! readers (the UI shows the same data as a table beside it). All text put into the SVG is
//! XML-escaped (labels come from data: measure names, provider names).
//!
//! - [`bar_chart`]: one bar per value (a rate, 0..=1), each with its own target mark.
//! - [`line_chart`]: a series of rates over ordered points (months), with a target line.
//! - [`count_chart`]: one bar per count (patients, visits); each bar carries `data-bar="i"`
//!   (its index in the input) so a screen can tell which bar was clicked.

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The bars' fill colour (also how tests find the bars).
pub const BAR_COLOR: RGBColor = RGBColor(0x2F, 0x6D, 0xB5);
/// The target marks' colour.
pub const TARGET_COLOR: RGBColor = RGBColor(0xC0, 0x39, 0x2B);
/// The line's colour.
pub const LINE_COLOR: RGBColor = RGBColor(0x1E, 0x7B, 0x4A);

const HEIGHT: u32 = 340;
const FONT: &str = "sans-serif";

/// One bar: a label under it, a value (a rate in 0..=1; `None`: no bar, e.g. an empty
/// denominator) and an optional target (0..=1) drawn as a dashed mark across the bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub target: Option<f64>,
}

/// One point of a line chart: a label on the x axis (a month) and a value (0..=1; `None`
/// leaves a gap).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub value: Option<f64>,
}

/// One bar of a count chart: a label under it and a count.
#[derive(Debug, Clone, PartialEq)]
pub struct CountBar {
    pub label: String,
    pub value: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the chart could not be drawn: {0}")]
pub struct ChartError(String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// XML-escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 does not allow.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn percent(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn clamp01(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Shortens a label to `max` characters (with an ellipsis) so it fits under its bar.
fn short(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Makes plotters' output scalable and accessible: drops the fixed `width`/`height`, adds
/// `role="img"`, `preserveAspectRatio`, `<title>` and `<desc>`.
fn finish(svg: String, title: &str, desc: &str) -> String {
    let Some(start) = svg.find("<svg") else {
        return svg;
    };
    let Some(end) = svg[start..].find('>').map(|e| start + e) else {
        return svg;
    };
    let head = &svg[start..end];
    let view_box = head
        .find("viewBox=\"")
        .and_then(|i| {
            let rest = &head[i + 9..];
            rest.find('"').map(|j| rest[..j].to_string())
        })
        .unwrap_or_default();
    let mut out = String::with_capacity(svg.len() + title.len() + desc.len() + 200);
    out.push_str(&svg[..start]);
    out.push_str(&format!(
        "<svg viewBox=\"{view_box}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" \
         preserveAspectRatio=\"xMidYMid meet\" style=\"width:100%;height:auto\">\n<title>{}</title>\n<desc>{}</desc>\n",
        escape(title),
        escape(desc)
    ));
    out.push_str(svg[end + 1..].trim_start_matches('\n'));
    out
}

/// A bar chart of rates (0..=1 shown as 0–100 %), one bar per value, each with its target;
/// each drawn bar's `<rect>` carries `data-bar="i"`, `i` its index in `bars`.
pub fn bar_chart(title: &str, bars: &[Bar]) -> Result<String, ChartError> {
    let n = bars.len().max(1);
    let width = (90 * n as u32 + 120).max(480);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..n as f64, 0f64..100f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc("Performance rate (%)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (i, b) in bars.iter().enumerate() {
            let x = i as f64;
            if let Some(v) = b.value {
                let v = clamp01(v) * 100.0;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x + 0.15, 0.0), (x + 0.85, v)],
                        BAR_COLOR.filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        percent(v / 100.0),
                        (x + 0.5, (v + 6.0).min(99.0)),
                        (FONT, 12)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    )))
                    .map_err(err)?;
            }
            if let Some(t) = b.target {
                let t = clamp01(t) * 100.0;
                chart
                    .draw_series(std::iter::once(DashedPathElement::new(
                        vec![(x + 0.05, t), (x + 0.95, t)],
                        6,
                        4,
                        TARGET_COLOR.stroke_width(3),
                    )))
                    .map_err(err)?;
            }
            // The label under the bar (on the plotting area's edge).
            let (px, py) = chart.backend_coord(&(x + 0.5, 0.0));
            root.draw(&Text::new(
                short(&b.label, 12),
                (px, py + 8),
                (FONT, 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let desc = bars
        .iter()
        .map(|b| {
            let v = b.value.map_or("no rate".to_string(), percent);
            match b.target {
                Some(t) => format!("{}: {v} (target {})", b.label, percent(t)),
                None => format!("{}: {v}", b.label),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let marked = mark_bars(
        &svg,
        bars.iter()
            .enumerate()
            .filter(|(_, b)| b.value.is_some())
            .map(|(i, _)| i),
    );
    Ok(finish(marked, title, &desc))
}

/// Gives each drawn bar's `<rect>` (in drawing order) `data-bar="i"`, `i` its index among
/// the chart's bars, so a click can tell which bar it was.
fn mark_bars(svg: &str, mut drawn: impl Iterator<Item = usize>) -> String {
    let fill = format!(
        "fill=\"#{:02X}{:02X}{:02X}\"",
        BAR_COLOR.0, BAR_COLOR.1, BAR_COLOR.2
    );
    let mut marked = String::with_capacity(svg.len() + 64);
    let mut rest = svg;
    while let Some(at) = rest.find("<rect") {
        let end = rest[at..].find('>').map_or(rest.len(), |e| at + e);
        let tag = &rest[at..end];
        marked.push_str(&rest[..at]);
        if tag.contains(&fill) {
            if let Some(i) = drawn.next() {
                marked.push_str(&format!("<rect data-bar=\"{i}\""));
                marked.push_str(&tag[5..]);
                rest = &rest[end..];
                continue;
            }
        }
        marked.push_str(tag);
        rest = &rest[end..];
    }
    marked.push_str(rest);
    marked
}

/// A bar chart of counts, one bar per value (a bar of 0 is not drawn), labelled with its
/// count; `y_desc` names the axis (`Patients`, `Visits`). Each drawn bar's `<rect>` carries
/// `data-bar="i"`, `i` its index in `bars`.
pub fn count_chart(title: &str, y_desc: &str, bars: &[CountBar]) -> Result<String, ChartError> {
    let n = bars.len().max(1);
    let width = (90 * n as u32 + 120).max(480);
    let max = bars.iter().map(|b| b.value).max().unwrap_or(0).max(1) as f64;
    let top = (max * 1.12).ceil();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc(y_desc)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (i, b) in bars.iter().enumerate() {
            let x = i as f64;
            if b.value > 0 {
                let v = b.value as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x + 0.15, 0.0), (x + 0.85, v)],
                        BAR_COLOR.filled(),
                    )))
                    .map_err(err)?;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    b.value.to_string(),
                    (x + 0.5, b.value as f64 + top * 0.04),
                    (FONT, 12)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                )))
                .map_err(err)?;
            let (px, py) = chart.backend_coord(&(x + 0.5, 0.0));
            root.draw(&Text::new(
                short(&b.label, 12),
                (px, py + 8),
                (FONT, 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let marked = mark_bars(
        &svg,
        bars.iter()
            .enumerate()
            .filter(|(_, b)| b.value > 0)
            .map(|(i, _)| i),
    );
    let desc = bars
        .iter()
        .map(|b| format!("{}: {}", b.label, b.value))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(finish(marked, title, &desc))
}

/// A line chart of rates (0..=1 shown as 0–100 %) over ordered points, with a target line.
pub fn line_chart(
    title: &str,
    points: &[Point],
    target: Option<f64>,
) -> Result<String, ChartError> {
    let n = points.len().max(1);
    let width = (56 * n as u32 + 120).max(480);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..n as f64, 0f64..100f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc("Performance rate (%)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(err)?;
        if let Some(t) = target {
            let t = clamp01(t) * 100.0;
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    vec![(0.0, t), (n as f64, t)],
                    6,
                    4,
                    TARGET_COLOR.stroke_width(2),
                )))
                .map_err(err)?;
        }
        // Consecutive points with values are joined; a missing value breaks the line.
        let mut run: Vec<(f64, f64)> = Vec::new();
        let mut runs = Vec::new();
        for (i, p) in points.iter().enumerate() {
            match p.value {
                Some(v) => run.push((i as f64 + 0.5, clamp01(v) * 100.0)),
                None => runs.push(std::mem::take(&mut run)),
            }
        }
        runs.push(run);
        for r in runs.into_iter().filter(|r| !r.is_empty()) {
            chart
                .draw_series(LineSeries::new(r.clone(), LINE_COLOR.stroke_width(2)))
                .map_err(err)?;
            chart
                .draw_series(
                    r.iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, LINE_COLOR.filled())),
                )
                .map_err(err)?;
        }
        for (i, p) in points.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                short(&p.label, 10),
                (px, py + 8),
                (FONT, 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let mut desc = points
        .iter()
        .map(|p| format!("{}: {}", p.label, p.value.map_or("no rate".into(), percent)))
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(t) = target {
        desc.push_str(&format!("; target {}", percent(t)));
    }
    Ok(finish(svg, title, &desc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).expect("well-formed XML")
    }

    fn bars_in(doc: &roxmltree::Document<'_>) -> usize {
        doc.descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("#2F6DB5"))
            .count()
    }

    fn bar(label: &str, value: Option<f64>, target: Option<f64>) -> Bar {
        Bar {
            label: label.into(),
            value,
            target,
        }
    }

    #[test]
    fn a_bar_chart_is_well_formed_scalable_svg_with_its_title_and_one_bar_per_value() {
        let bars = [
            bar("CMS122", Some(0.25), Some(0.2)),
            bar("CMS125", Some(0.7), Some(0.8)),
            bar("CMS130", None, None),
            bar("CMS165", Some(1.0), None),
        ];
        let svg = bar_chart("Performance by measure", &bars).unwrap();
        let doc = parse(&svg);
        let root = doc.root_element();
        assert!(root.has_tag_name("svg"));
        assert!(root.attribute("viewBox").is_some());
        assert_eq!(root.attribute("width"), None, "no fixed pixel size");
        assert_eq!(root.attribute("height"), None, "no fixed pixel size");
        assert_eq!(root.attribute("role"), Some("img"));
        let title = root.children().find(|n| n.has_tag_name("title")).unwrap();
        assert_eq!(title.text(), Some("Performance by measure"));
        assert_eq!(bars_in(&doc), 3, "one bar per value");
        // Each drawn bar knows its index among the bars (CMS130 has none).
        let marked: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-bar"))
            .collect();
        assert_eq!(marked, ["0", "1", "3"]);
        let desc = root.children().find(|n| n.has_tag_name("desc")).unwrap();
        let desc = desc.text().unwrap();
        assert!(desc.contains("CMS125: 70.0% (target 80.0%)"), "{desc}");
        assert!(desc.contains("CMS130: no rate"));
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect();
        for label in ["CMS122", "CMS125", "CMS130", "CMS165", "25.0%", "70.0%"] {
            assert!(texts.iter().any(|t| t == label), "{label} in {texts:?}");
        }
        // Two target marks.
        let dashed = doc
            .descendants()
            .filter(|n| n.attribute("stroke") == Some("#C0392B"))
            .count();
        assert!(dashed >= 2, "target marks drawn");
    }

    #[test]
    fn text_from_data_is_escaped() {
        let evil = "<script>alert('x')</script> & \"Dr\"";
        let svg = bar_chart(evil, &[bar(evil, Some(0.5), None)]).unwrap();
        assert!(!svg.contains("<script>"));
        let doc = parse(&svg);
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("script"))
                .count(),
            0
        );
        let title = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("title"))
            .unwrap();
        assert_eq!(title.text(), Some(evil));
        assert_eq!(bars_in(&doc), 1);
    }

    #[test]
    fn a_count_chart_draws_one_marked_bar_per_nonzero_count() {
        let bars: Vec<CountBar> = [("0–17", 3), ("18–34", 0), ("<b>&", 12)]
            .iter()
            .map(|(l, v)| CountBar {
                label: (*l).into(),
                value: *v,
            })
            .collect();
        let svg = count_chart("Patients by age", "Patients", &bars).unwrap();
        let doc = parse(&svg);
        assert_eq!(doc.root_element().attribute("width"), None);
        assert_eq!(bars_in(&doc), 2);
        let marks: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-bar"))
            .collect();
        assert_eq!(marks, ["0", "2"]);
        let desc = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("desc"))
            .unwrap();
        assert_eq!(desc.text(), Some("0–17: 3; 18–34: 0; <b>&: 12"));
        assert!(!svg.contains("<b>"));
    }

    #[test]
    fn an_empty_bar_chart_still_draws() {
        let svg = bar_chart("Nothing yet", &[]).unwrap();
        let doc = parse(&svg);
        assert_eq!(bars_in(&doc), 0);
    }

    #[test]
    fn a_line_chart_has_its_title_one_point_per_value_and_a_target_line() {
        let points: Vec<Point> = ["2025-01", "2025-02", "2025-03", "2025-04"]
            .iter()
            .zip([Some(0.4), None, Some(0.5), Some(0.55)])
            .map(|(l, v)| Point {
                label: (*l).into(),
                value: v,
            })
            .collect();
        let svg = line_chart("Trend by month", &points, Some(0.6)).unwrap();
        let doc = parse(&svg);
        let root = doc.root_element();
        assert_eq!(root.attribute("width"), None);
        assert!(root.attribute("viewBox").is_some());
        assert!(root
            .children()
            .any(|n| n.has_tag_name("title") && n.text() == Some("Trend by month")));
        let points_drawn = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle") && n.attribute("fill") == Some("#1E7B4A"))
            .count();
        assert_eq!(points_drawn, 3, "one point per value");
        assert!(doc
            .descendants()
            .any(|n| n.attribute("stroke") == Some("#C0392B")));
        let desc = root.children().find(|n| n.has_tag_name("desc")).unwrap();
        assert!(desc.text().unwrap().contains("2025-02: no rate"));
        assert!(desc.text().unwrap().ends_with("target 60.0%"));
    }
}
