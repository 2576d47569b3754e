//! Entries for other systems: JSON lines, RFC 5424 syslog lines, and the journal's native
//! protocol (structured fields) for the daemon.

use super::log::Record;

/// One JSON object per line.
pub fn jsonl(record: &Record) -> String {
    serde_json::to_string(record).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// An RFC 5424 line: facility authpriv (10), severity notice (5), structured data with the
/// entry's facts, and the reason as the message.
pub fn syslog(record: &Record) -> String {
    let Some(d) = &record.details else {
        return format!(
            "<85>1 {} - custodian - audit [custodian@32473 seq=\"{}\" actor=\"{}\" sealed=\"true\"] entry not sealed to this key",
            record.time,
            record.seq,
            sd_escape(&record.signed_by)
        );
    };
    let params = [
        ("seq", record.seq.to_string()),
        ("actor", d.actor.clone()),
        ("name", d.name.clone().unwrap_or_default()),
        ("role", d.role.clone()),
        ("op", d.op.clone()),
        ("access", format!("{:?}", d.access).to_lowercase()),
        ("source", d.source.clone().unwrap_or_default()),
        ("snapshots", d.snapshots.join(",")),
        ("result", record.result().to_string()),
        ("offline", record.flagged_offline.to_string()),
    ];
    let sd: String = params
        .iter()
        .map(|(k, v)| format!(" {k}=\"{}\"", sd_escape(v)))
        .collect();
    format!(
        "<85>1 {} {} custodian - audit [custodian@32473{sd}] {}",
        record.time,
        header_field(&d.host),
        one_line(&d.reason)
    )
}

/// RFC 5424 PARAM-VALUE escaping: `"`, `\` and `]`.
fn sd_escape(v: &str) -> String {
    one_line(v)
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// A header field is printable ASCII without spaces, or `-`.
fn header_field(v: &str) -> String {
    let clean: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

fn one_line(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The journal's native datagram for an entry the daemon wrote: `KEY=value` lines (values
/// without newlines), so `journalctl CUSTODIAN_AUDIT_OP=backup` finds them.
pub fn journal_fields(seq: u64, op: &str, source: Option<&str>, result: &str) -> Vec<u8> {
    let message = format!("audit entry {seq}: {op} {}", source.unwrap_or(""));
    let fields = [
        ("MESSAGE", one_line(message.trim())),
        ("PRIORITY", "5".into()),
        ("SYSLOG_IDENTIFIER", "custodian".into()),
        ("CUSTODIAN_AUDIT_SEQ", seq.to_string()),
        ("CUSTODIAN_AUDIT_OP", one_line(op)),
        ("CUSTODIAN_AUDIT_SOURCE", one_line(source.unwrap_or(""))),
        ("CUSTODIAN_AUDIT_RESULT", one_line(result)),
    ];
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Send to journald when running under it (best effort: the entry is in the repository).
pub fn to_journal(datagram: &[u8]) {
    if std::env::var_os("JOURNAL_STREAM").is_none() {
        return;
    }
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let _ = socket.send_to(datagram, "/run/systemd/journal/socket");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_escapes_what_would_break_the_line() {
        assert_eq!(sd_escape("a\"b]c\\d\ne"), "a\\\"b\\]c\\\\d e");
        assert_eq!(header_field("my host"), "myhost");
        assert_eq!(header_field(""), "-");
    }

    #[test]
    fn journal_fields_are_single_lines() {
        let d = journal_fields(7, "backup", Some("ledger\nX=1"), "ok");
        let text = String::from_utf8(d).unwrap_or_default();
        assert!(text.contains("CUSTODIAN_AUDIT_SEQ=7\n"));
        assert!(text.contains("CUSTODIAN_AUDIT_SOURCE=ledger X=1\n"));
        assert_eq!(text.lines().count(), 7);
    }
}
