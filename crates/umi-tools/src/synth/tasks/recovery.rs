//! Error recovery: a rejected call, the planner reads the error, a corrected call.

use super::*;

pub(super) fn country_alias(s: &mut Session) -> Result<TaskOutcome, String> {
    let (alias, canonical) = s.pick(COUNTRY_ALIASES);
    let (aspect, queries) = s.any(COUNTRY_ASPECTS);
    let query = fill(s.pick(queries), &[("c", alias.into())]);
    let written = alias.strip_prefix("the ").unwrap_or(alias);
    let err = match country_lookup(s, written, "") {
        Err(e) => e,
        Ok(v) => {
            return Err(format!(
                "synthetic task: {written:?} unexpectedly known: {v}"
            ));
        }
    };
    let _ = err;
    let thought = fill(
        s.any(&[
            "The knowledge base has no entry for \"{w}\", but its list of known countries includes {c}, which is the same country. I will ask again with that name.",
            "country_info does not know \"{w}\"; the error lists {c}, the official name, so I call it again with {c}.",
            "\"{w}\" is not a name the tool knows. {w} means {c}, which is in its list, so I retry with {c}.",
        ]),
        &[("w", written.into()), ("c", canonical.into())],
    );
    let r = ok(
        s.call(&thought, "country_info", json!({"country": canonical})),
        "country_info",
    )?;
    let (answer, fact) = country_fact(s, aspect, &r, canonical)?;
    let (thought, answer) = (
        fill(
            s.any(&[
                "The second call worked: the {aspect} of {c} is {x}.",
                "Now I have the {aspect}: {x}.",
            ]),
            &[
                ("aspect", aspect.into()),
                ("c", canonical.into()),
                ("x", fact.clone()),
            ],
        ),
        answer,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![fact]))
}

pub(super) fn alarm_time_format(s: &mut Session) -> Result<TaskOutcome, String> {
    let (hhmm, spoken) = values::time(&mut s.rng, s.split);
    let label = s.rng.random_bool(0.4).then(|| s.pick(ALARM_LABELS));
    let query = fill(
        s.pick_phrasing(
            &[
                "Set an alarm for {t}.",
                "Wake me up at {t}.",
                "Please set an alarm at {t}{l}.",
                "I need an alarm at {t}{l}.",
            ],
            &[
                "Can you set an alarm at {t}{l}?",
                "Make an alarm go off at {t}{l}.",
                "Alarm at {t}{l}, please.",
            ],
        ),
        &[
            ("t", spoken.clone()),
            (
                "l",
                label
                    .map(|l| format!(" labelled \"{l}\""))
                    .unwrap_or_default(),
            ),
        ],
    );
    if alarm(s, &spoken, label, "").is_ok() {
        return Err(format!("synthetic task: set_alarm accepted {spoken:?}"));
    }
    let vars = hour_vars(&spoken, &hhmm);
    let drawn = fill(
        s.any(&[
            "set_alarm rejected \"{sp}\": the time must be HH:MM. {sp} is {t}, so I set the alarm again with {t}.",
            "The tool needs the time as HH:MM, so \"{sp}\" has to be written {t}. I will call set_alarm again.",
            "The error says the time is not HH:MM. In 24-hour form {sp} is {t}; I retry with that.",
        ]),
        &vars,
    );
    // 1 pm to 11 pm add 12 hours; 12 pm stays 12, am hours stay (12 am is 00)
    let worked: &[&str] = if hhmm.as_str() >= "13:00" {
        &[
            "set_alarm rejected \"{sp}\": the time must be HH:MM in 24-hour form. {sp} is hour {h} pm, and pm adds 12: {h} + 12 = {hh}, so the time is {t}. I retry.",
            "The error says the time is not HH:MM. Hour {h} pm is {h} + 12 = {hh} on a 24-hour clock, with minute {mm}: {t}. I call set_alarm again.",
        ]
    } else {
        &[
            "set_alarm rejected \"{sp}\": the time must be HH:MM in 24-hour form. {sp} is hour {h} {ampm}, which stays {hh} on a 24-hour clock, so the time is {t}. I retry.",
            "The error says the time is not HH:MM. Hour {h} {ampm} is {hh} on a 24-hour clock, with minute {mm}: {t}. I call set_alarm again.",
        ]
    };
    let thought = s.worked(drawn, worked, &vars);
    let args = match label {
        Some(l) => json!({"time": hhmm, "label": l}),
        None => json!({"time": hhmm}),
    };
    ok(s.call(&thought, "set_alarm", args), "set_alarm")?;
    finish_alarm(s, query, &hhmm, label)
}

/// Template variables of a 12-hour time `spoken` and its `hhmm`: `sp`, `t` (HH:MM), `h` (the
/// 12-hour hour), `ampm`, `hh` (the 24-hour hour) and `mm` (the minutes), in that order.
fn hour_vars(spoken: &str, hhmm: &str) -> [(&'static str, String); 6] {
    let (hh, mm) = hhmm.split_once(':').unwrap_or((hhmm, "00"));
    let ampm = if spoken.ends_with("pm") { "pm" } else { "am" };
    let h = spoken
        .split(|c: char| c == ':' || !c.is_ascii_digit())
        .next()
        .unwrap_or(hh)
        .to_string();
    [
        ("sp", spoken.to_string()),
        ("t", hhmm.to_string()),
        ("h", h),
        ("ampm", ampm.to_string()),
        ("hh", hh.to_string()),
        ("mm", mm.to_string()),
    ]
}

pub(super) fn date_format(s: &mut Session) -> Result<TaskOutcome, String> {
    let d = values::date(&mut s.rng, s.split);
    let written = values::slashed_date(&mut s.rng, d);
    let query = fill(
        s.pick_phrasing(
            &[
                "What day of the week is {d}?",
                "Which weekday is {d}?",
                "On what day of the week does {d} fall?",
                "Tell me the weekday of {d}.",
            ],
            &[
                "I need to know what day {d} is.",
                "Is {d} a Monday, a Friday or another day?",
                "What weekday does {d} fall on?",
            ],
        ),
        &[("d", written.clone())],
    );
    if lookup_weekday(s, &written, "").is_ok() {
        return Err(format!("synthetic task: weekday accepted {written:?}"));
    }
    let vars = [
        ("w", written.clone()),
        ("iso", iso(d)),
        ("y", d.0.to_string()),
        ("m", format!("{:02}", d.1)),
        ("d", format!("{:02}", d.2)),
    ];
    let drawn = fill(
        s.any(&[
            "The weekday tool rejected \"{w}\" because dates must be YYYY-MM-DD. Day first, {w} is {iso}, so I call weekday again with {iso}.",
            "The date has to be written YYYY-MM-DD: \"{w}\" (day, month, year) becomes {iso}. I retry.",
            "The error says \"{w}\" is not YYYY-MM-DD. I rewrite it as {iso} and call weekday again.",
        ]),
        &vars,
    );
    let thought = s.worked(
        drawn,
        &[
            "The weekday tool rejected \"{w}\": dates must be YYYY-MM-DD. Day first, \"{w}\" is day {d}, month {m}, year {y}, so it is {iso}. I call weekday again.",
            "The error says \"{w}\" is not YYYY-MM-DD. Read day, month, year: day {d}, month {m}, year {y}; year first that is {iso}. I retry.",
        ],
        &vars,
    );
    let r = ok(
        s.call(&thought, "weekday", json!({"date": iso(d)})),
        "weekday",
    )?;
    let day = text(&r, "weekday")?;
    let vars = [("w", written), ("iso", iso(d)), ("day", day.clone())];
    let (thought, answer) = (
        fill(
            "With the date written {iso}, the tool says it is a {day}.",
            &vars,
        ),
        fill(
            s.any(&["{w} ({iso}) is a {day}.", "{iso} falls on a {day}."]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![day]))
}
