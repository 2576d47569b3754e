//! Progress bars drawn from the library's atomic counters by a ticker thread, so the library
//! knows nothing of terminals. Off when stdout is not a terminal or with `--json`.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running bar; dropping it stops the ticker.
pub struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    /// Draw `done`/`total` as bytes (or plain counts) with `label`, if `enabled`.
    pub fn start(
        enabled: bool,
        label: &'static str,
        bytes: bool,
        read: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        if !enabled {
            return Bar { stop, thread: None };
        }
        let template = if bytes {
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        } else {
            "{prefix} [{bar:30}] {pos}/{len} eta {eta}"
        };
        // Until the work is sized (the walk, the plan) a spinner says so instead of a full bar.
        let bar = ProgressBar::new_spinner().with_prefix(label);
        if let Ok(style) = ProgressStyle::with_template("{prefix} {spinner} scanning… {elapsed}")
        {
            bar.set_style(style);
        }
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut sized = false;
            while !flag.load(Ordering::Relaxed) {
                let (done, total) = read();
                if total > 0 && !sized {
                    sized = true;
                    if let Ok(style) = ProgressStyle::with_template(template) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                }
                if sized {
                    bar.set_length(total.max(done));
                    bar.set_position(done);
                } else {
                    bar.tick();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Bar {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
