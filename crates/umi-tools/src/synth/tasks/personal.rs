//! One-tool task families on the personal tools: to-dos, alarms, calendar events.

use super::*;

pub(super) fn todo(
    s: &mut Session,
    title: &str,
    due: Option<&str>,
    lead: &str,
) -> Result<Value, String> {
    let thought = fill(
        s.any(&[
            "{lead}I will add \"{t}\" to the to-do list with add_todo.",
            "{lead}The add_todo tool adds \"{t}\" to the to-do list.",
            "{lead}I should call add_todo with the title \"{t}\"{due}.",
        ]),
        &[
            ("lead", lead.into()),
            ("t", title.into()),
            (
                "due",
                due.map(|d| format!(" and due date {d}"))
                    .unwrap_or_default(),
            ),
        ],
    );
    let args = match due {
        Some(d) => json!({"title": title, "due_date": d}),
        None => json!({"title": title}),
    };
    ok(s.call(&thought, "add_todo", args), "add_todo")
}

pub(super) fn add_todo(s: &mut Session) -> Result<TaskOutcome, String> {
    let t = s.pick(TODOS);
    let due = s
        .rng
        .random_bool(0.5)
        .then(|| values::date(&mut s.rng, s.split));
    let query = match due {
        Some(d) => fill(
            s.pick_phrasing(
                &[
                    "Add \"{t}\" to my to-do list, due {d}.",
                    "I need to {t} by {d}. Put it on my to-do list.",
                    "Remind me to {t}; it is due on {d}. Add it to my to-dos.",
                    "Create a to-do item \"{t}\" with the due date {d}.",
                ],
                &[
                    "Please add the to-do \"{t}\" and set its due date to {d}.",
                    "Put \"{t}\" on my list of to-dos, due on {d}.",
                    "I have to {t} before {d}; make it a to-do with that due date.",
                ],
            ),
            &[("t", t.into()), ("d", iso(d))],
        ),
        None => fill(
            s.pick_phrasing(
                &[
                    "Add \"{t}\" to my to-do list.",
                    "Put \"{t}\" on my to-do list, please.",
                    "I must remember to {t}. Add it to my to-dos.",
                    "New to-do item: {t}.",
                ],
                &[
                    "Please remember this as a to-do: {t}.",
                    "Add a to-do to {t}.",
                    "Can you put \"{t}\" on my to-dos?",
                ],
            ),
            &[("t", t.into())],
        ),
    };
    let due_iso = due.map(iso);
    let r = todo(s, t, due_iso.as_deref(), "")?;
    let id = fmt_num(num(&r, "id")?, 0);
    let vars = [
        ("t", t.to_string()),
        ("id", id),
        (
            "due",
            due_iso
                .as_ref()
                .map(|d| format!(", due {d}"))
                .unwrap_or_default(),
        ),
    ];
    let thought = fill(
        s.any(&[
            "The item was added with id {id}.",
            "add_todo confirmed \"{t}\" as item {id}. I can tell the user.",
            "Done: the to-do item has id {id}.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "I added \"{t}\" to your to-do list (item {id}{due}).",
            "\"{t}\" is now on your to-do list as item {id}{due}.",
            "Added to your to-dos: \"{t}\" (id {id}{due}).",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    let mut expected = vec![t.to_string()];
    expected.extend(due_iso);
    Ok(outcome(query, expected))
}

pub(super) fn alarm(s: &mut Session, time: &str, label: Option<&str>, lead: &str) -> ToolAnswer {
    let thought = fill(
        s.any(&[
            "{lead}I will set the alarm with set_alarm at {time}{label}.",
            "{lead}The set_alarm tool sets an alarm for {time}{label}.",
            "{lead}I should call set_alarm with time {time}{label}.",
        ]),
        &[
            ("lead", lead.into()),
            ("time", time.into()),
            (
                "label",
                label
                    .map(|l| format!(" and label \"{l}\""))
                    .unwrap_or_default(),
            ),
        ],
    );
    let args = match label {
        Some(l) => json!({"time": time, "label": l}),
        None => json!({"time": time}),
    };
    s.call(&thought, "set_alarm", args)
}

pub(super) fn set_alarm(s: &mut Session) -> Result<TaskOutcome, String> {
    let (hhmm, _) = values::time(&mut s.rng, s.split);
    let label = s.rng.random_bool(0.5).then(|| s.pick(ALARM_LABELS));
    let query = match label {
        Some(l) => fill(
            s.pick_phrasing(
                &[
                    "Set an alarm at {time} labelled \"{l}\".",
                    "Please set a \"{l}\" alarm for {time}.",
                    "I need an alarm at {time} to {l}.",
                    "Create an alarm for {time} called \"{l}\".",
                ],
                &[
                    "Alarm at {time}, label it \"{l}\".",
                    "Make a {time} alarm with the label \"{l}\".",
                    "I'd like an alarm at {time}; use \"{l}\" as its label.",
                ],
            ),
            &[("time", hhmm.clone()), ("l", l.into())],
        ),
        None => fill(
            s.pick_phrasing(
                &[
                    "Set an alarm for {time}.",
                    "Wake me up at {time}.",
                    "Please set an alarm at {time}.",
                    "I need an alarm at {time}.",
                ],
                &[
                    "Can you set an alarm at {time}?",
                    "Alarm for {time}, please.",
                    "Make sure an alarm goes off at {time}.",
                ],
            ),
            &[("time", hhmm.clone())],
        ),
    };
    ok(alarm(s, &hhmm, label, ""), "set_alarm")?;
    finish_alarm(s, query, &hhmm, label)
}

pub(super) fn finish_alarm(
    s: &mut Session,
    query: String,
    hhmm: &str,
    label: Option<&str>,
) -> Result<TaskOutcome, String> {
    let vars = [
        ("time", hhmm.to_string()),
        (
            "label",
            label.map(|l| format!(" (\"{l}\")")).unwrap_or_default(),
        ),
    ];
    let thought = fill(
        s.any(&[
            "The alarm is set for {time}.",
            "set_alarm confirmed the alarm at {time}{label}. I can tell the user.",
            "Done: an alarm at {time}.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "Your alarm is set for {time}{label}.",
            "I set an alarm at {time}{label}.",
            "Done: the alarm{label} will ring at {time}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![hhmm.to_string()]))
}

pub(super) fn calendar(
    s: &mut Session,
    title: &str,
    date: &str,
    time: Option<&str>,
    lead: &str,
) -> Result<Value, String> {
    let thought = fill(
        s.any(&[
            "{lead}I will add \"{t}\" on {d}{time} with add_calendar_event.",
            "{lead}The add_calendar_event tool puts \"{t}\" on the calendar on {d}{time}.",
            "{lead}I should call add_calendar_event with title \"{t}\" and date {d}{time}.",
        ]),
        &[
            ("lead", lead.into()),
            ("t", title.into()),
            ("d", date.into()),
            ("time", time.map(|t| format!(" at {t}")).unwrap_or_default()),
        ],
    );
    let args = match time {
        Some(t) => json!({"title": title, "date": date, "time": t}),
        None => json!({"title": title, "date": date}),
    };
    ok(
        s.call(&thought, "add_calendar_event", args),
        "add_calendar_event",
    )
}

pub(super) fn add_event(s: &mut Session) -> Result<TaskOutcome, String> {
    let title = s.pick(EVENTS);
    let d = values::date(&mut s.rng, s.split);
    let time = s
        .rng
        .random_bool(0.6)
        .then(|| values::time(&mut s.rng, s.split).0);
    let spoken = values::spoken_date(&mut s.rng, d);
    let query = fill(
        s.pick_phrasing(
            &[
                "Add \"{t}\" to my calendar on {d}{time}.",
                "Put the {t} on my calendar for {d}{time}.",
                "Schedule the {t} on {d}{time}.",
                "Create a calendar event \"{t}\" on {d}{time}.",
                "Please note the {t} in my calendar: {d}{time}.",
                "I have a {t} on {d}{time}; add it to the calendar.",
            ],
            &[
                "Book the {t} in my calendar on {d}{time}.",
                "My calendar needs the {t} on {d}{time}.",
                "Enter \"{t}\" into the calendar for {d}{time}.",
            ],
        ),
        &[
            ("t", title.into()),
            ("d", spoken.clone()),
            (
                "time",
                time.as_ref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
            ),
        ],
    );
    let r = calendar(s, title, &iso(d), time.as_deref(), "")?;
    let id = fmt_num(num(&r, "id")?, 0);
    let vars = [
        ("t", title.to_string()),
        ("d", iso(d)),
        ("id", id),
        (
            "time",
            time.as_ref()
                .map(|t| format!(" at {t}"))
                .unwrap_or_default(),
        ),
    ];
    let thought = fill(
        s.any(&[
            "The event was added with id {id}.",
            "add_calendar_event confirmed \"{t}\" on {d}{time}. I can tell the user.",
            "Done: the event is on the calendar.",
        ]),
        &vars,
    );
    let answer = fill(
        s.any(&[
            "I added \"{t}\" to your calendar on {d}{time}.",
            "\"{t}\" is on your calendar for {d}{time} (event {id}).",
            "Scheduled: {t} on {d}{time}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    let mut expected = vec![iso(d)];
    expected.extend(time);
    Ok(outcome(query, expected))
}
