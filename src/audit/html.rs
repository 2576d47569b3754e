//! The evidence report as one self-contained HTML page: no script, no external file, charts as
//! inline SVG, every text from the log escaped (entries are hostile input too).

use super::report::{Day, DrillRun, Event, Facts};
use std::fmt::Write;

/// Render `facts` as the page an auditor reads.
pub fn render(f: &Facts) -> String {
    let mut h = String::new();
    let title = "custodian evidence report";
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>\
         <p id=\"scope\">Repository <b>{}</b>, from {} to {}{}. RPO target for backups: {}.</p>",
        esc(&f.repository),
        esc(&f.since),
        esc(&f.generated),
        f.source
            .as_deref()
            .map(|s| format!(", source <b>{}</b>", esc(s)))
            .unwrap_or_default(),
        hours(f.rpo_target_seconds as f64)
    );
    audit_section(&mut h, f);
    backups_section(&mut h, f);
    drills_section(&mut h, &f.drills);
    table(&mut h, "checks", "Checks", &f.checks);
    access_section(&mut h, f);
    table(&mut h, "reads", "Every read of records", &f.reads);
    table(&mut h, "destruction", "Destruction", &f.destruction);
    table(&mut h, "handovers", "Handovers", &f.handovers);
    if f.unreadable_entries > 0 {
        let _ = write!(
            h,
            "<p>{} entries in this period were sealed before this reader was added; they are \
             verified above but their details are not shown.</p>",
            f.unreadable_entries
        );
    }
    h.push_str("</body></html>\n");
    h
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:70em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.2em .5em;\
font-size:.9em;text-align:left}.ok{color:#176417}.bad{color:#a01010;font-weight:bold}\
svg{background:#fafafa;border:1px solid #ddd;margin:.3em 0}";

fn audit_section(h: &mut String, f: &Facts) {
    let a = &f.audit;
    let (class, verdict) = if a.verified {
        ("ok", "VERIFIED")
    } else {
        ("bad", "FAILED")
    };
    let _ = write!(
        h,
        "<section id=\"audit\"><h2>Audit log</h2><p>Verification: <span class=\"{class}\">\
         {verdict}</span>. {} entries, {} checkpoints; latest checkpoint: {}. Entries kept \
         offline and uploaded later: {}.</p>",
        a.entries,
        a.checkpoints,
        a.latest_checkpoint.as_ref().map_or_else(
            || "none".into(),
            |(n, t)| format!("{n} entries at {}", esc(t))
        ),
        a.offline_entries
    );
    for p in &a.problems {
        let _ = write!(h, "<p class=\"bad\">{}</p>", esc(p));
    }
    h.push_str("</section>");
}

fn backups_section(h: &mut String, f: &Facts) {
    h.push_str("<section id=\"backups\"><h2>Backups and the RPO</h2>");
    if f.sources.is_empty() {
        h.push_str("<p>No backups in this period.</p>");
    }
    for s in &f.sources {
        let missed = s.days.iter().filter(|d| !d.met).count();
        let _ = write!(
            h,
            "<h3>{}</h3><p>{} backups, {} failed; RPO met on {} of {} days.</p>",
            esc(&s.name),
            s.backups,
            s.failed,
            s.days.len() - missed,
            s.days.len()
        );
        h.push_str(&gap_chart(&s.days, f.rpo_target_seconds as f64));
    }
    h.push_str("</section>");
}

/// Bars of the longest gap each day (hours), red where it passed the target line.
fn gap_chart(days: &[Day], target: f64) -> String {
    let bars: Vec<(String, f64, bool)> = days
        .iter()
        .map(|d| (d.date.clone(), d.worst_gap_seconds as f64, d.met))
        .collect();
    bar_chart(
        &bars,
        target,
        "longest time without a backup, per day",
        hours,
    )
}

fn drills_section(h: &mut String, drills: &[DrillRun]) {
    h.push_str("<section id=\"drills\"><h2>Restore drills: RTO and RPO</h2>");
    if drills.is_empty() {
        h.push_str("<p>No drills in this period.</p></section>");
        return;
    }
    let mut rto = Vec::new();
    let mut rpo = Vec::new();
    h.push_str("<table><tr><th>time</th><th>source</th><th>by</th><th>result</th><th>RTO achieved / target</th><th>RPO achieved / target</th></tr>");
    for d in drills {
        for x in &d.figures {
            let label = d.time.chars().take(10).collect::<String>();
            rto.push((
                label.clone(),
                x.rto_achieved / x.rto_target.max(1e-9),
                x.rto_achieved <= x.rto_target,
            ));
            let rpo_share = x.rpo_achieved as f64 / (x.rpo_target.max(1) as f64);
            rpo.push((label, rpo_share, x.rpo_achieved <= x.rpo_target));
        }
        let figures: Vec<String> = d
            .figures
            .iter()
            .map(|x| format!("{} / {}", secs(x.rto_achieved), secs(x.rto_target)))
            .collect();
        let rpos: Vec<String> = d
            .figures
            .iter()
            .map(|x| {
                format!(
                    "{} / {}",
                    hours(x.rpo_achieved as f64),
                    hours(x.rpo_target as f64)
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.time),
            esc(d.source.as_deref().unwrap_or("several")),
            esc(&d.by),
            if d.result == "ok" { "ok" } else { "bad" },
            esc(&d.result),
            figures.join(", "),
            rpos.join(", ")
        );
    }
    h.push_str("</table><h3>RTO: restore time as a share of the target</h3>");
    h.push_str(&share_chart(&rto, "RTO achieved / target"));
    h.push_str("<h3>RPO: newest snapshot's age as a share of the target</h3>");
    h.push_str(&share_chart(&rpo, "RPO achieved / target"));
    h.push_str("</section>");
}

/// Shares of a target (1.0 = the line).
fn share_chart(bars: &[(String, f64, bool)], what: &str) -> String {
    bar_chart(bars, 1.0, what, |v| format!("{:.0}%", v * 100.0))
}

/// A bar chart against a target line; `show` writes a value for people.
fn bar_chart(
    bars: &[(String, f64, bool)],
    target: f64,
    what: &str,
    show: fn(f64) -> String,
) -> String {
    let (w, hgt, left) = (12.0, 160.0, 40.0);
    let top = bars
        .iter()
        .map(|b| b.1)
        .fold(target * 1.25, f64::max)
        .max(f64::MIN_POSITIVE);
    let width = left + w * bars.len().max(1) as f64 + 10.0;
    let y = |v: f64| hgt - v / top * (hgt - 10.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"{width:.0}\" \
         height=\"{}\" aria-label=\"{}\"><title>{}</title>",
        hgt + 20.0,
        esc(what),
        esc(what)
    );
    for (i, (label, v, met)) in bars.iter().enumerate() {
        let x = left + w * i as f64;
        let fill = if *met { "#3a9a3a" } else { "#c83232" };
        let _ = write!(
            s,
            "<rect class=\"{}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"{fill}\"><title>{}: {}</title></rect>",
            if *met { "met" } else { "missed" },
            y(*v),
            w - 2.0,
            hgt - y(*v),
            esc(label),
            show(*v)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{left}\" x2=\"{width:.0}\" y1=\"{t:.1}\" y2=\"{t:.1}\" stroke=\"#333\" \
         stroke-dasharray=\"4 3\"/><text x=\"2\" y=\"{t:.1}\" font-size=\"10\">{}</text>\
         <text x=\"{left}\" y=\"{:.0}\" font-size=\"10\">{}</text></svg>",
        show(target),
        hgt + 14.0,
        esc(what),
        t = y(target)
    );
    s
}

fn access_section(h: &mut String, f: &Facts) {
    h.push_str("<section id=\"access\"><h2>Access changes and review</h2>");
    match &f.last_review {
        Some(r) => {
            let _ = write!(
                h,
                "<p>Last access review signed off {} (entry {}, trust list version {}).</p>",
                esc(&r.time),
                r.seq,
                r.trust_seq
            );
        }
        None => h.push_str("<p class=\"bad\">No access review was ever signed off.</p>"),
    }
    h.push_str("</section>");
    table(
        h,
        "access-changes",
        "Changes to who may do what",
        &f.access_changes,
    );
}

fn table(h: &mut String, id: &str, title: &str, events: &[Event]) {
    let _ = write!(h, "<section id=\"{id}\"><h2>{}</h2>", esc(title));
    if events.is_empty() {
        h.push_str("<p>None in this period.</p></section>");
        return;
    }
    h.push_str("<table><tr><th>#</th><th>time</th><th>what</th><th>by</th><th>source</th><th>snapshots</th><th>why</th><th>result</th><th>files</th></tr>");
    for e in events {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            e.seq,
            esc(&e.time),
            esc(&e.op),
            esc(&e.by),
            esc(e.source.as_deref().unwrap_or("")),
            e.snapshots,
            esc(&e.reason),
            esc(&e.result),
            e.files.map(|n| n.to_string()).unwrap_or_default()
        );
    }
    h.push_str("</table></section>");
}

fn hours(seconds: f64) -> String {
    format!("{:.1} h", seconds / 3600.0)
}

fn secs(seconds: f64) -> String {
    format!("{seconds:.1} s")
}

/// Escape text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_in_a_reason_is_escaped() {
        assert_eq!(
            super::esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
