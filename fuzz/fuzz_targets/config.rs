//! The TOML config loader: any text either loads or yields problems that each carry a message
//! and, when positioned, a line inside the text; a loaded config prints its normalized form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|src: &str| {
    match fluxgate::config::parse(src, "fuzz.toml") {
        Ok(cfg) => {
            let normalized = cfg.normalized();
            assert!(normalized.contains("[server]"), "{normalized}");
        }
        Err(errs) => {
            assert!(!errs.problems.is_empty(), "an error with no problem");
            let lines = src.lines().count().max(1) + 1;
            for (e, pos) in &errs.problems {
                assert!(!e.message.is_empty(), "a problem with no message");
                if let Some((line, _col)) = pos {
                    assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
                }
            }
            let _ = errs.to_string();
        }
    }
});
