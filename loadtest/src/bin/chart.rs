//! `chart`: draws docs/BENCHMARKS.md's charts from the load tester's
//! `--json` results, as SVG.
//!
//! It reads every `DIR/LABEL/*.json` (what `loadtest/sweep.sh LABEL=...`
//! saves; LABEL names a build, e.g. `before` and `after`) and writes:
//!
//! * `DIR/fanout-p99.svg`: p99 delivery latency against offered rate for
//!   the fanout runs, one line per label;
//! * `DIR/fanout-delivered.svg`: deliveries per second against offered rate;
//! * `DIR/loadtest-cost.svg`: the load tester's CPU per delivery against
//!   offered rate (how far it is from being the limit);
//! * `DIR/connect-memory.svg`: server memory per idle connection against
//!   connections held, for the connect runs.
//!
//! Each point is one run; the line goes through the median of the runs at
//! each x. A run that failed (a loss, a drop, a refused connection) is
//! drawn as a cross instead of a dot.
//!
//!     cargo run --release -p loadtest --bin chart -- [DIR]   (default docs/bench)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde_json::Value;

/// One chart: which runs, what is drawn against what.
struct Spec {
    file: &'static str,
    title: &'static str,
    scenario: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    x: fn(&Value) -> Option<f64>,
    y: fn(&Value) -> Option<f64>,
    log_y: bool,
    /// A horizontal line: a goal or a limit, with its name.
    line: Option<(f64, &'static str)>,
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, key| v.get(key))?.as_f64()
}

const SPECS: [Spec; 4] = [
    Spec {
        file: "fanout-p99.svg",
        title: "fanout, 1 room: p99 delivery latency",
        scenario: "fanout",
        x_desc: "offered rate (messages/s into the room)",
        y_desc: "p99 latency (ms, log scale)",
        x: |v| num(v, &["settings", "total_rate"]),
        y: |v| num(v, &["deliveries", "latency_ms", "p99"]),
        log_y: true,
        line: Some((100.0, "100 ms")),
    },
    Spec {
        file: "fanout-delivered.svg",
        title: "fanout, 1 room: deliveries per second",
        scenario: "fanout",
        x_desc: "offered rate (messages/s into the room)",
        y_desc: "deliveries/s while sending (thousands)",
        x: |v| num(v, &["settings", "total_rate"]),
        y: |v| num(v, &["deliveries", "per_s"]).map(|d| d / 1000.0),
        log_y: false,
        line: None,
    },
    Spec {
        file: "loadtest-cost.svg",
        title: "the load tester's CPU per delivery",
        scenario: "fanout",
        x_desc: "offered rate (messages/s into the room)",
        y_desc: "µs of CPU per delivery",
        x: |v| num(v, &["settings", "total_rate"]),
        y: |v| num(v, &["loadtest_us_per_delivery"]),
        log_y: false,
        line: Some((0.6, "0.6 µs: 60% of a core at 1 M/s")),
    },
    Spec {
        file: "connect-memory.svg",
        title: "server memory per idle connection",
        scenario: "connect",
        x_desc: "connections held",
        y_desc: "KB per connection (RSS growth / connections)",
        x: |v| num(v, &["connections", "opened"]),
        y: |v| num(v, &["server", "bytes_per_connection"]).map(|b| b / 1024.0),
        log_y: false,
        line: Some((8.0, "8 KB goal")),
    },
];

/// One run's point, and whether the run passed.
type Point = (f64, f64, bool);

fn main() -> ExitCode {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "docs/bench".into()),
    );
    let runs = match read_runs(&dir) {
        Ok(runs) if !runs.is_empty() => runs,
        Ok(_) => {
            eprintln!("chart: no {}/LABEL/*.json results", dir.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("chart: {e}");
            return ExitCode::from(2);
        }
    };
    let mut status = ExitCode::SUCCESS;
    for spec in &SPECS {
        let series: BTreeMap<&str, Vec<Point>> = runs
            .iter()
            .map(|(label, results)| {
                let points = results
                    .iter()
                    .filter(|r| r["settings"]["scenario"] == spec.scenario)
                    .filter_map(|r| {
                        let passed = r["passed"].as_bool().unwrap_or(false);
                        Some(((spec.x)(r)?, (spec.y)(r)?, passed))
                    })
                    .collect();
                (label.as_str(), points)
            })
            .filter(|(_, points): &(_, Vec<Point>)| !points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let path = dir.join(spec.file);
        match draw(spec, &series, &path) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("chart: {}: {e}", path.display());
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}

/// Every `dir/LABEL/*.json`, by label.
fn read_runs(dir: &Path) -> Result<BTreeMap<String, Vec<Value>>, String> {
    let mut runs = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        if !entry.path().is_dir() {
            continue;
        }
        let label = entry.file_name().to_string_lossy().into_owned();
        let mut results = Vec::new();
        for file in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = file.path();
            if path.extension().map_or(true, |e| e != "json") {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => results.push(v),
                // A run that was cut short leaves a partial file: skip it.
                Err(e) => eprintln!("chart: skipping {}: {e}", path.display()),
            }
        }
        runs.insert(label, results);
    }
    Ok(runs)
}

/// The median of the runs at each x, in x order.
fn medians(points: &[Point]) -> Vec<(f64, f64)> {
    let mut by_x: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for &(x, y, _) in points {
        by_x.entry(x.to_bits()).or_default().push(y);
    }
    let mut line: Vec<(f64, f64)> = by_x
        .into_iter()
        .map(|(x, mut ys)| {
            ys.sort_by(f64::total_cmp);
            let n = ys.len();
            let median = if n % 2 == 1 {
                ys[n / 2]
            } else {
                (ys[n / 2 - 1] + ys[n / 2]) / 2.0
            };
            (f64::from_bits(x), median)
        })
        .collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    line
}

/// An axis value without trailing zeros: 1000, 2.5, 0.6.
fn trim(y: f64) -> String {
    let text = format!("{y:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(spec: &Spec, series: &BTreeMap<&str, Vec<Point>>, path: &Path) -> DrawResult {
    let all = series.values().flatten();
    let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max) * 1.08;
    let mut y_max = all.clone().map(|p| p.1).fold(0.0, f64::max);
    let mut y_min = all.map(|p| p.1).fold(f64::INFINITY, f64::min);
    if let Some((y, _)) = spec.line {
        y_max = y_max.max(y);
        y_min = y_min.min(y);
    }
    let root = SVGBackend::new(path, (820, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(spec.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64);
    if spec.log_y {
        let range = (y_min.max(0.01) / 1.5)..(y_max * 1.5);
        let mut chart = builder.build_cartesian_2d(0.0..x_max.max(1.0), range.log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| trim(*y))
            .x_desc(spec.x_desc)
            .y_desc(spec.y_desc)
            .draw()?;
        plot(&mut chart, spec, series, x_max)?;
    } else {
        let mut chart =
            builder.build_cartesian_2d(0.0..x_max.max(1.0), 0.0..(y_max * 1.15).max(1e-3))?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| trim(*y))
            .x_desc(spec.x_desc)
            .y_desc(spec.y_desc)
            .draw()?;
        plot(&mut chart, spec, series, x_max)?;
    }
    root.present()?;
    Ok(())
}

fn plot<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    spec: &Spec,
    series: &BTreeMap<&str, Vec<Point>>,
    x_max: f64,
) -> DrawResult
where
    Y: Ranged<ValueType = f64>,
{
    if let Some((y, name)) = spec.line {
        let goal = RGBColor(110, 110, 110);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, y), (x_max, y)],
                8,
                5,
                goal.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], goal.stroke_width(2)));
    }
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(medians(points), color.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            points
                .iter()
                .filter(|p| p.2)
                .map(|&(x, y, _)| Circle::new((x, y), 3, color.filled())),
        )?;
        chart.draw_series(
            points
                .iter()
                .filter(|p| !p.2)
                .map(|&(x, y, _)| Cross::new((x, y), 5, color.stroke_width(2))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_goes_through_the_median_of_the_runs_at_each_x() {
        let points = [
            (500.0, 3.0, true),
            (100.0, 9.0, true),
            (500.0, 1.0, false),
            (500.0, 2.0, true),
            (100.0, 5.0, true),
        ];
        assert_eq!(medians(&points), vec![(100.0, 7.0), (500.0, 2.0)]);
        assert_eq!(medians(&[]), vec![]);
    }

    #[test]
    fn runs_are_read_by_label_and_drawn_from_their_json() {
        let dir = tempfile::tempdir().unwrap();
        for (label, rate, p99) in [
            ("before", 100, 30.0),
            ("before", 500, 40.0),
            ("after", 100, 12.0),
        ] {
            std::fs::create_dir_all(dir.path().join(label)).unwrap();
            let run = serde_json::json!({
                "passed": true,
                "settings": {"scenario": "fanout", "total_rate": rate},
                "deliveries": {"per_s": 1000.0 * rate as f64, "latency_ms": {"p99": p99}},
                "loadtest_us_per_delivery": 0.4,
            });
            std::fs::write(
                dir.path().join(label).join(format!("fanout-{rate}-1.json")),
                run.to_string(),
            )
            .unwrap();
        }
        // A run cut short is skipped, not fatal.
        std::fs::write(dir.path().join("after").join("fanout-500-1.json"), "{").unwrap();
        let runs = read_runs(dir.path()).unwrap();
        assert_eq!(runs["before"].len(), 2);
        assert_eq!(runs["after"].len(), 1);
        let series: BTreeMap<&str, Vec<Point>> = runs
            .iter()
            .map(|(label, rs)| {
                let spec = &SPECS[0];
                let points = rs
                    .iter()
                    .filter_map(|r| Some(((spec.x)(r)?, (spec.y)(r)?, true)))
                    .collect();
                (label.as_str(), points)
            })
            .collect();
        let path = dir.path().join("fanout-p99.svg");
        draw(&SPECS[0], &series, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("before") && svg.contains("after") && svg.contains("100 ms"));
        assert_eq!(trim(1000.0), "1000");
        assert_eq!(trim(0.6), "0.6");
    }
}
