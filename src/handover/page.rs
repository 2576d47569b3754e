//! The handover list as a page both owners read and sign off (交接清单): one self-contained
//! HTML file, no script, every text escaped. The signed JSON beside it is what counts; the page
//! says so.

use crate::audit::html::esc;
use crate::format::handover::Manifest;
use crate::human::bytes as human_bytes;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:70em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.2em .5em;\
font-size:.9em;text-align:left}code{font-size:.85em}";

/// Render the list.
pub fn render(m: &Manifest) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Handover list {id}</title><style>{STYLE}</style></head><body>\
         <h1>Handover list (交接清单)</h1>\
         <p id=\"what\">Record store <b>{source}</b> handed over on {created}.</p>\
         <table id=\"parties\"><tr><th></th><th>Repository</th><th>Key</th></tr>\
         <tr><td>From</td><td>{from} <code>{from_id}</code></td><td>signing key <code>{from_key}</code></td></tr>\
         <tr><td>To</td><td>{to} <code>{to_id}</code></td><td>recipient <code>{to_key}</code></td></tr></table>\
         <p>Reason: {reason}<br>Classification: {class}<br>Purpose: {purpose}</p>",
        id = esc(&m.id),
        source = esc(&m.source),
        created = esc(&m.created),
        from = esc(&m.from.repository),
        from_id = esc(&m.from.repository_id),
        from_key = esc(&m.from.key),
        to = esc(&m.to.repository),
        to_id = esc(&m.to.repository_id),
        to_key = esc(&m.to.key),
        reason = esc(&m.reason),
        class = esc(&m.classification),
        purpose = esc(&m.purpose),
    );
    let t = &m.totals;
    let _ = write!(
        h,
        "<h2>Totals</h2><table id=\"totals\"><tr><th>Snapshots</th><th>Files</th><th>Bytes</th>\
         <th>Packs</th><th>Pack bytes</th><th>Blobs</th><th>Session keys</th></tr><tr><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        t.snapshots,
        t.files,
        human_bytes(t.bytes),
        t.packs,
        human_bytes(t.pack_bytes),
        t.blobs,
        t.sessions
    );
    h.push_str(
        "<h2>Snapshots</h2><table id=\"snapshots\"><tr><th>Snapshot</th><th>Was</th><th>Time</th>\
         <th>Files</th><th>Directories</th><th>Bytes</th><th>Head hash</th><th>Holds</th></tr>",
    );
    for s in &m.snapshots {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(super::short(&s.id)),
            esc(super::short(&s.old_id)),
            esc(&s.time),
            s.files,
            s.dirs,
            s.bytes,
            esc(&s.head_hash),
            esc(&s.holds.join("; "))
        );
    }
    h.push_str("</table><h2>Packs</h2><table id=\"packs\"><tr><th>Pack</th><th>Bytes</th></tr>");
    for p in &m.packs {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            esc(&p.id),
            p.size
        );
    }
    let _ = write!(
        h,
        "</table><h2>Retention and destruction</h2><p id=\"retention\">{}</p>\
         <table id=\"destruction\"><tr><th>Action</th><th>Time</th><th>By</th><th>Snapshots</th>\
         <th>Note</th></tr>",
        esc(&m.retention)
    );
    for d in &m.destruction {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.action),
            esc(&d.time),
            esc(&d.by),
            d.snapshots,
            esc(&d.note)
        );
    }
    let _ = write!(
        h,
        "</table><h2>Audit</h2><p id=\"audit\">The old owner's audit log stood at entry {} \
         (head <code>{}</code>) when this list was made.</p><p id=\"binding\">This page shows \
         <code>handover-list.json</code>, which the old owner signed (<code>handover-list.sig\
         </code>); <code>custodian handover accept</code> checks the signature and every count \
         and hash above against the receiving repository.</p></body></html>",
        m.audit.entries,
        esc(&m.audit.head)
    );
    h.push('\n');
    h
}
