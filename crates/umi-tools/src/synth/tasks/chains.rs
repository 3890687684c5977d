//! Multi-tool chains: one observation feeds the next call.

use super::*;

pub(super) fn currency_and_weekday(s: &mut Session) -> Result<TaskOutcome, String> {
    let amt = values::amount(&mut s.rng, s.split);
    let ((fc, fname), (tc, tname)) = currency_pair(s);
    let d = values::date(&mut s.rng, s.split);
    let spoken = values::spoken_date(&mut s.rng, d);
    let query = fill(
        s.pick_phrasing(
            &[
                "What is {amt} {from} in {to}, and what day of the week is {d}?",
                "Convert {amt} {from} to {to} and tell me which weekday {d} is.",
                "Two questions: how much is {amt} {from} in {to}, and what day is {d}?",
                "I'm paying {amt} {from} on {d}. How many {to} is that, and what weekday is it?",
                "How many {to} is {amt} {from}? Also, which day of the week is {d}?",
                "Which weekday is {d}, and what is {amt} {from} worth in {to}?",
            ],
            &[
                "Need two facts: the {to} value of {amt} {from}, and the weekday of {d}.",
                "Tell me what {amt} {from} converts to in {to}. Then tell me the weekday of {d}.",
                "Can you convert {amt} {from} into {to}, then look up the day of the week for {d}?",
                "Please do two things: change {amt} {from} to {to} and find which day {d} is.",
            ],
        ),
        &[
            ("amt", amt.to_string()),
            ("from", fname),
            ("to", tname),
            ("d", spoken.clone()),
        ],
    );
    let lead = s.any(&[
        "There are two questions; first the conversion. ",
        "I will answer both parts, starting with the currency. ",
        "",
    ]);
    let parts = [
        ("amt", amt.to_string()),
        ("from", fc.to_string()),
        ("to", tc.to_string()),
        ("d", iso(d)),
    ];
    let lead = s.plan_lead(
        lead,
        &[
            "The query asks two things: {amt} {from} in {to}, and the weekday of {d}. First the conversion. ",
            "Two parts: (1) convert {amt} {from} to {to}; (2) the weekday of {d}. I start with part 1. ",
        ],
        &parts,
    );
    let r = convert(s, amt, fc, tc, &lead)?;
    let x = fmt_num(num(&r, "amount")?, 2);
    let lead = fill(
        s.any(&[
            "{amt} {from} is {x} {to}. Now I need the weekday of {d}. ",
            "The conversion gave {x} {to}. The second question is about the date. ",
            "I have {x} {to}; the second part is the day of the week. ",
        ]),
        &[
            ("amt", amt.to_string()),
            ("from", fc.into()),
            ("to", tc.into()),
            ("x", x.clone()),
            ("d", iso(d)),
        ],
    );
    let lead = s.plan_lead(
        &lead,
        &[
            "Part 1 is done: {amt} {from} is {x} {to}. Still open: part 2, the weekday of {d}. ",
            "Done: {x} {to}. Left: the weekday of {d}. ",
        ],
        &[parts.as_slice(), &[("x", x.clone())]].concat(),
    );
    let day = lookup_weekday(s, &iso(d), &lead)?;
    let vars = [
        ("amt", amt.to_string()),
        ("from", fc.to_string()),
        ("to", tc.to_string()),
        ("x", x.clone()),
        ("d", spoken),
        ("day", day.clone()),
    ];
    let thought = fill(
        s.any(&[
            "I have both answers: {x} {to} and {day}.",
            "Both parts are answered: {amt} {from} is {x} {to}, and {d} is a {day}.",
            "The weekday is {day} and the amount {x} {to}, so I can conclude.",
        ]),
        &vars,
    );
    let thought = s.plan_lead(
        &thought,
        &[
            "Both parts are answered: {amt} {from} is {x} {to}, and {d} is a {day}. Nothing is left.",
            "All parts are done: {x} {to} and {day}.",
        ],
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{amt} {from} is {x} {to}, and {d} is a {day}.",
            "{amt} {from} comes to {x} {to}. {d} falls on a {day}.",
            "It is {x} {to} for {amt} {from}; {d} is a {day}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x, day]))
}

pub(super) fn currency_of_country(s: &mut Session) -> Result<TaskOutcome, String> {
    let amt = values::amount(&mut s.rng, s.split);
    let c = s.pick(COUNTRIES);
    let i = s.rng.random_range(0..CURRENCIES.len());
    let (fc, fname) = (CURRENCIES[i].0, s.any(CURRENCIES[i].1).to_string());
    let query = fill(
        s.pick_phrasing(
            &[
                "How much is {amt} {from} in the currency of {c}?",
                "I'm travelling to {c} with {amt} {from}. How much is that in the local currency?",
                "Convert {amt} {from} into {c}'s currency.",
                "What is {amt} {from} worth in the money used in {c}?",
                "I will spend {amt} {from} in {c}. How much local currency is that?",
            ],
            &[
                "Turn {amt} {from} into whatever currency {c} uses.",
                "{c} has its own currency. How much of it do I get for {amt} {from}?",
                "Find the currency of {c} and convert {amt} {from} into it.",
                "My budget is {amt} {from}. What is that in the currency people pay with in {c}?",
            ],
        ),
        &[("amt", amt.to_string()), ("from", fname), ("c", c.into())],
    );
    let lead = s.any(&[
        "First I need to know which currency {c} uses. ",
        "The local currency of {c} is not given, so I look it up first. ",
        "",
    ]);
    let lead = fill(lead, &[("c", c.into())]);
    let lead = s.plan_lead(
        &lead,
        &[
            "Two steps: the currency of {c}, then {amt} {from} converted into it. First the currency. ",
            "The query needs (1) the currency {c} uses and (2) {amt} {from} in that currency. Part 1 first. ",
        ],
        &[
            ("c", c.to_string()),
            ("amt", amt.to_string()),
            ("from", fc.to_string()),
        ],
    );
    let r = ok(country_lookup(s, c, &lead), "country_info")?;
    let code = text(&r, "currency")?;
    let vars = [
        ("c", c.to_string()),
        ("code", code.clone()),
        ("amt", amt.to_string()),
        ("from", fc.to_string()),
    ];
    if code == fc {
        let thought = fill(
            "{c} uses {code}, the currency the amount is already in, so no conversion is needed.",
            &vars,
        );
        let thought = s.plan_lead(
            &thought,
            &["Step 1 is done: {c} uses {code}, the currency the amount is already in, so step 2 is not needed."],
            &vars,
        );
        let answer = fill(
            "{c} uses {code}, so {amt} {from} is simply {amt} {code}; no conversion is needed.",
            &vars,
        );
        s.conclude(&thought, &answer);
        return Ok(outcome(query, vec![amt.to_string(), code]));
    }
    let lead = fill(
        s.any(&[
            "{c} uses {code}. Now I convert {amt} {from} to {code}: ",
            "The currency of {c} is {code}. ",
            "country_info says {c} uses {code}. ",
        ]),
        &vars,
    );
    let lead = s.plan_lead(
        &lead,
        &[
            "Step 1 is done: {c} uses {code}. Left: converting {amt} {from} to {code}. ",
            "Part 1 is done ({code}). Still open: {amt} {from} in {code}. ",
        ],
        &vars,
    );
    let r = convert(s, amt, fc, &code, &lead)?;
    let x = fmt_num(num(&r, "amount")?, 2);
    let vars = [
        ("c", c.to_string()),
        ("code", code.clone()),
        ("amt", amt.to_string()),
        ("from", fc.to_string()),
        ("x", x.clone()),
    ];
    let thought = fill(
        s.any(&[
            "{amt} {from} is {x} {code}, the currency of {c}.",
            "I have the local amount: {x} {code}.",
        ]),
        &vars,
    );
    let thought = s.plan_lead(
        &thought,
        &["Both steps are done: {c} uses {code}, and {amt} {from} is {x} {code}."],
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{c} uses {code}; {amt} {from} is {x} {code}.",
            "In {c} you pay in {code}: {amt} {from} comes to {x} {code}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x, code]))
}

pub(super) fn weeks_between(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = date_pair(s);
    let query = fill(
        s.pick_phrasing_more(
            &[
                "How many weeks are there between {a} and {b}?",
                "How many weeks is it from {a} to {b}?",
                "Express the time from {a} to {b} in weeks.",
                "From {a} until {b}: how many weeks is that?",
            ],
            &[
                "Give me the number of weeks from {a} to {b}.",
                "In weeks, how long is the span between {a} and {b}?",
                "I have a project running from {a} to {b}. How many weeks long is it?",
                "Tell me how many weeks pass between {a} and {b}.",
            ],
            &[
                "Between {a} and {b}, how many weeks go by?",
                "{a} to {b}: give me the length in weeks.",
                "Starting {a} and ending {b}, how many weeks is the span?",
                "In weeks, not days: how long from {a} until {b}?",
            ],
        ),
        &[("a", iso(a)), ("b", iso(b))],
    );
    let lead = s.any(&[
        "First I need the number of days. ",
        "",
        "I start with the days between the dates. ",
    ]);
    let lead = s.plan_lead(
        lead,
        &[
            "Two steps: the days from {a} to {b}, then those days divided by 7. First the days. ",
            "The weeks need (1) the number of days from {a} to {b} and (2) that number divided by 7. Step 1 first. ",
        ],
        &[("a", iso(a)), ("b", iso(b))],
    );
    let days = count_days(s, &iso(a), &iso(b), &lead)?;
    let lead = fill(
        s.any(&[
            "There are {n} days; dividing by 7 gives the weeks. ",
            "date_difference gave {n} days. Now I divide by 7. ",
        ]),
        &[("n", days.to_string())],
    );
    let lead = s.plan_lead(
        &lead,
        &[
            "Step 1 is done: {n} days. Left: dividing {n} by 7 for the weeks. ",
            "Done: {n} days. Still open: step 2, the weeks ({n} divided by 7). ",
        ],
        &[("n", days.to_string())],
    );
    let w = calculate(s, days as f64, "divide", 7.0, &lead)?;
    let x = fmt_num(w, 2);
    let vars = [
        ("n", days.to_string()),
        ("x", x.clone()),
        ("a", iso(a)),
        ("b", iso(b)),
    ];
    let thought = fill(
        s.any(&["{n} days are {x} weeks.", "The calculator gives {x} weeks."]),
        &vars,
    );
    let thought = s.plan_lead(
        &thought,
        &["Both steps are done: {n} days are {x} weeks."],
        &vars,
    );
    let answer = fill(
        s.any(&[
            "From {a} to {b} there are {n} days, which is about {x} weeks.",
            "It is {x} weeks ({n} days).",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x]))
}

pub(super) fn two_countries(s: &mut Session) -> (&'static str, &'static str) {
    let a = s.pick(COUNTRIES);
    loop {
        let b = s.pick(COUNTRIES);
        if b != a {
            return (a, b);
        }
    }
}

pub(super) fn population_sum_or_difference(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = two_countries(s);
    let sum = s.rng.random_bool(0.5);
    let query = if sum {
        fill(
            s.pick_phrasing_more(
                &[
                    "What is the combined population of {a} and {b}?",
                    "How many people live in {a} and {b} together?",
                    "Add up the populations of {a} and {b}.",
                    "What is the total population of {a} plus {b}?",
                ],
                &[
                    "Sum the populations of {a} and {b}.",
                    "If you put everyone in {a} and {b} together, how many people is that?",
                    "Tell me how many inhabitants {a} and {b} have altogether.",
                    "Together, {a} and {b} have how many residents?",
                ],
                &[
                    "{a} and {b}: what is their population in total?",
                    "Population of {a} plus population of {b}: how much is that?",
                    "How many inhabitants do {a} and {b} have combined?",
                ],
            ),
            &[("a", a.into()), ("b", b.into())],
        )
    } else {
        fill(
            s.pick_phrasing_more(
                &[
                    "What is the difference in population between {a} and {b}?",
                    "How many more people live in one of {a} and {b} than in the other?",
                    "By how much do the populations of {a} and {b} differ?",
                    "Compare the populations of {a} and {b}: what is the gap?",
                ],
                &[
                    "How much larger is the population of {a} or {b} than the other one?",
                    "Subtract the smaller population from the larger one, for {a} and {b}.",
                    "Tell me how far apart the populations of {a} and {b} are.",
                    "Find the difference between how many people live in {a} and in {b}.",
                ],
                &[
                    "{a} versus {b}: how big is the difference in population?",
                    "What is the population gap between {a} and {b}?",
                    "How many people separate the populations of {a} and {b}?",
                ],
            ),
            &[("a", a.into()), ("b", b.into())],
        )
    };
    let lead = s.any(&[
        "I need both populations, starting with the first country. ",
        "",
    ]);
    let what = if sum { "sum" } else { "difference" };
    let lead = s.plan_lead(
        lead,
        &[
            "Three steps: the population of {a}, the population of {b}, then their {what}. First {a}. ",
            "The query needs (1) {a}'s population, (2) {b}'s population and (3) their {what}. Step 1 first. ",
        ],
        &[("a", a.into()), ("b", b.into()), ("what", what.into())],
    );
    let ra = ok(country_lookup(s, a, &lead), "country_info")?;
    let pa = num(&ra, "population")?;
    let lead = fill(
        s.any(&[
            "{a} has {p} people. Now I need {b}. ",
            "The population of {a} is {p}. ",
        ]),
        &[("a", a.into()), ("p", fmt_num(pa, 0)), ("b", b.into())],
    );
    let lead = s.plan_lead(
        &lead,
        &[
            "Step 1 is done: {a} has {p} people. Next: the population of {b}, then the {what}. ",
            "Done: {a} ({p}). Left: {b}'s population and the {what}. ",
        ],
        &[
            ("a", a.into()),
            ("p", fmt_num(pa, 0)),
            ("b", b.into()),
            ("what", what.into()),
        ],
    );
    let rb = ok(country_lookup(s, b, &lead), "country_info")?;
    let pb = num(&rb, "population")?;
    let (x, y, op) = if sum {
        (pa, pb, "add")
    } else if pa >= pb {
        (pa, pb, "subtract")
    } else {
        (pb, pa, "subtract")
    };
    let lead = fill(
        s.any(&[
            "{a} has {pa} and {b} has {pb} people. ",
            "I have both populations ({pa} and {pb}). ",
        ]),
        &[
            ("a", a.into()),
            ("b", b.into()),
            ("pa", fmt_num(pa, 0)),
            ("pb", fmt_num(pb, 0)),
        ],
    );
    let lead = s.plan_lead(
        &lead,
        &[
            "Steps 1 and 2 are done: {a} has {pa} and {b} has {pb} people. Left: their {what}. ",
            "Both populations are in ({pa} and {pb}). Still open: step 3, the {what}. ",
        ],
        &[
            ("a", a.into()),
            ("b", b.into()),
            ("pa", fmt_num(pa, 0)),
            ("pb", fmt_num(pb, 0)),
            ("what", what.into()),
        ],
    );
    let r = calculate(s, x, op, y, &lead)?;
    let rs = fmt_num(r, 0);
    let vars = [
        ("a", a.to_string()),
        ("b", b.to_string()),
        ("pa", fmt_num(pa, 0)),
        ("pb", fmt_num(pb, 0)),
        ("r", rs.clone()),
    ];
    let done = s.plan_lead("", &["All steps are done. ", "Nothing is left. "], &vars);
    let (thought, answer) = if sum {
        (
            fill(&format!("{done}Together they have {{r}} people."), &vars),
            fill(
                s.any(&[
                    "{a} ({pa}) and {b} ({pb}) have a combined population of {r}.",
                    "Together, {a} and {b} have about {r} inhabitants.",
                ]),
                &vars,
            ),
        )
    } else {
        (
            fill(&format!("{done}The difference is {{r}} people."), &vars),
            fill(
                s.any(&[
                    "{a} has {pa} people and {b} has {pb}: a difference of {r}.",
                    "The populations of {a} and {b} differ by {r}.",
                ]),
                &vars,
            ),
        )
    };
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![rs]))
}

pub(super) fn two_todos(s: &mut Session) -> (&'static str, &'static str) {
    let a = s.pick(TODOS);
    loop {
        let b = s.pick(TODOS);
        if b != a {
            return (a, b);
        }
    }
}

pub(super) fn list_tool(s: &mut Session, tool: &str, lead: &str) -> Result<Value, String> {
    let thought = fill(
        s.any(&[
            "{lead}Now I call {tool} to show the list.",
            "{lead}I will list them with {tool}.",
        ]),
        &[("lead", lead.into()), ("tool", tool.into())],
    );
    ok(s.call(&thought, tool, json!({})), tool)
}

pub(super) fn todos_then_list(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = two_todos(s);
    let query = fill(
        s.pick_phrasing_more(
        &[
            "Add \"{a}\" and \"{b}\" to my to-do list, then show me the list.",
            "Put \"{a}\" and \"{b}\" on my to-dos and tell me what is on the list.",
            "I need to {a} and {b}. Add both to my to-do list and list my to-dos.",
            "New to-dos: \"{a}\", \"{b}\". What does my list look like now?",
        ],
        &[
            "Please add two to-dos, \"{a}\" and \"{b}\", and then list everything on my to-do list.",
            "Two things for my to-do list: \"{a}\" and \"{b}\". Afterwards show me all my to-dos.",
            "Save \"{a}\" and \"{b}\" as to-dos and read my list back to me.",
        ],
        &[
            "To-do list: add \"{a}\" and \"{b}\", then tell me everything on it.",
            "Could you note \"{a}\" and \"{b}\" as to-dos? Then show me the full list.",
            "Two new tasks, \"{a}\" and \"{b}\". After adding them, what is on my to-do list?",
            "Add these to-dos: \"{a}\", \"{b}\". Then list my to-dos.",
        ],
        ),
        &[("a", a.into()), ("b", b.into())],
    );
    let lead = s.any(&["There are two items to add; first ", ""]);
    let lead = s.plan_lead(
        lead,
        &[
            "Three steps: add \"{a}\", add \"{b}\", then list the to-dos. First \"{a}\": ",
            "The query needs (1) \"{a}\" added, (2) \"{b}\" added and (3) the list shown. Step 1: ",
        ],
        &[("a", a.into()), ("b", b.into())],
    );
    let ra = todo(s, a, None, &lead)?;
    let vars = [
        ("a", a.to_string()),
        ("b", b.to_string()),
        ("id", fmt_num(num(&ra, "id")?, 0)),
    ];
    let lead = fill("\"{a}\" is item {id}. ", &vars);
    let lead = s.plan_lead(
        &lead,
        &[
            "Step 1 is done: \"{a}\" is item {id}. Next: add \"{b}\", then the list. ",
            "Done: \"{a}\" (item {id}). Left: \"{b}\" and the list. ",
        ],
        &vars,
    );
    todo(s, b, None, &lead)?;
    let lead = s.plan_lead(
        "Both items are added. ",
        &[
            "Steps 1 and 2 are done: both items are added. Left: showing the list. ",
            "Both items are in. Still open: step 3, the list. ",
        ],
        &vars,
    );
    let r = list_tool(s, "list_todos", &lead)?;
    let items: Vec<String> = r
        .get("todos")
        .and_then(Value::as_array)
        .ok_or("synthetic task: list_todos gave no list")?
        .iter()
        .map(|t| format!("{} (item {})", t["title"].as_str().unwrap_or(""), t["id"]))
        .collect();
    let vars = [("n", items.len().to_string()), ("items", items.join(", "))];
    let done = s.plan_lead("", &["All steps are done. "], &vars);
    let (thought, answer) = (
        fill(
            &format!("{done}The list has {{n}} open items: {{items}}."),
            &vars,
        ),
        fill(
            s.any(&[
                "Both items are added. Your to-do list now has {n} items: {items}.",
                "Done. Your to-dos: {items}.",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![a.to_string(), b.to_string()]))
}

pub(super) fn event_after_days(s: &mut Session) -> Result<TaskOutcome, String> {
    let title = s.pick(EVENTS);
    let d = values::date(&mut s.rng, s.split);
    let n = values::small(&mut s.rng, s.split, 2, 90);
    let query = fill(
        s.pick_phrasing_more(
            &[
                "Schedule the {t} {n} days after {d}.",
                "Put the {t} on my calendar {n} days after {d}.",
                "The {t} is {n} days after {d}. Add it to my calendar.",
                "Add \"{t}\" to the calendar, {n} days from {d}.",
            ],
            &[
                "Count {n} days forward from {d} and book the {t} on that date.",
                "Please put the {t} in my calendar on the date {n} days after {d}.",
                "I want the {t} in my calendar on the day that is {n} days past {d}.",
            ],
            &[
                "Book the {t} for {n} days from {d}.",
                "The {t} happens {n} days later than {d}; put it in my calendar.",
                "Set up a calendar event \"{t}\" on the day {n} days following {d}.",
                "Mark \"{t}\" in my calendar {n} days on from {d}.",
                "{n} days from {d} I have the {t}. Please schedule it.",
            ],
        ),
        &[("t", title.into()), ("n", n.to_string()), ("d", iso(d))],
    );
    let lead = s.any(&["First I need the date. ", ""]);
    let lead = s.plan_lead(
        lead,
        &[
            "Two steps: the date {n} days after {d}, then \"{t}\" on that date. First the date. ",
            "The query needs (1) the date {n} days after {d} and (2) \"{t}\" added on it. Step 1 first. ",
        ],
        &[("t", title.into()), ("n", n.to_string()), ("d", iso(d))],
    );
    let (date, day) = shift_date(s, &iso(d), n, &lead)?;
    let lead = fill(
        s.any(&[
            "The date is {date} ({day}). ",
            "{n} days after the start is {date}. ",
        ]),
        &[
            ("date", date.clone()),
            ("day", day.clone()),
            ("n", n.to_string()),
        ],
    );
    let lead = s.plan_lead(
        &lead,
        &[
            "Step 1 is done: the date is {date} ({day}). Left: adding \"{t}\" on {date}. ",
            "Done: {date}. Still open: step 2, \"{t}\" on the calendar. ",
        ],
        &[
            ("t", title.into()),
            ("date", date.clone()),
            ("day", day.clone()),
        ],
    );
    calendar(s, title, &date, None, &lead)?;
    let vars = [
        ("t", title.to_string()),
        ("date", date.clone()),
        ("day", day),
    ];
    let (thought, answer) = (
        fill(
            &s.plan_lead(
                "\"{t}\" is on the calendar on {date}.",
                &["Both steps are done: \"{t}\" is on the calendar on {date}."],
                &[],
            ),
            &vars,
        ),
        fill(
            s.any(&[
                "I scheduled \"{t}\" on {date}, a {day}.",
                "\"{t}\" is now on your calendar for {date} ({day}).",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![date]))
}

pub(super) fn distance_total(s: &mut Session) -> Result<TaskOutcome, String> {
    let pairs = [
        ("km", "mi", "kilometers", "miles"),
        ("mi", "km", "miles", "kilometers"),
    ];
    let (from, to, fname, tname) = s.any(&pairs);
    let v = values::small(&mut s.rng, s.split, 2, 30) as f64;
    let n = values::small(&mut s.rng, s.split, 2, 60) as f64;
    let query = fill(
        s.pick_phrasing(
            &[
                "I run {v} {from} every day. How many {to} is that over {n} days?",
                "If I walk {v} {from} a day for {n} days, how many {to} do I cover?",
                "My commute is {v} {from} each way-day, {n} days a month. How many {to} per month?",
                "A trip of {v} {from} per day for {n} days: how far is that in {to}?",
            ],
            &[
                "I cycle {v} {from} daily. Over {n} days, how many {to} is that?",
                "Every day for {n} days I swim {v} {from}. What total is that in {to}?",
                "Multiply {v} {from} by {n} days and give me the total in {to}.",
                "I hike {v} {from} each day for {n} days. What is the total distance in {to}?",
            ],
        ),
        &[
            ("v", fmt_num(v, 6)),
            ("from", fname.into()),
            ("to", tname.into()),
            ("n", fmt_num(n, 6)),
        ],
    );
    let lead = s.any(&["First the total distance. ", ""]);
    let lead = s.plan_lead(
        lead,
        &[
            "Two steps: {v} {from} times {n} days, then that total in {to}. First the total. ",
            "The query needs (1) the total, {v} {from} times {n}, and (2) that total in {to}. Step 1 first. ",
        ],
        &[
            ("v", fmt_num(v, 6)),
            ("from", from.into()),
            ("to", to.into()),
            ("n", fmt_num(n, 6)),
        ],
    );
    let total = calculate(s, v, "multiply", n, &lead)?;
    let lead = fill(
        s.any(&[
            "The total is {t} {from}. Now I convert it. ",
            "{t} {from} in all. ",
        ]),
        &[("t", fmt_num(total, 6)), ("from", from.into())],
    );
    let lead = s.plan_lead(
        &lead,
        &[
            "Step 1 is done: {t} {from} in total. Left: converting it to {to}. ",
            "Done: {t} {from}. Still open: step 2, the total in {to}. ",
        ],
        &[
            ("t", fmt_num(total, 6)),
            ("from", from.into()),
            ("to", to.into()),
        ],
    );
    let thought = fill(
        s.any(&[
            "{lead}I will convert {t} {from} to {to} with convert_units.",
            "{lead}convert_units turns {t} {from} into {to}.",
        ]),
        &[
            ("lead", lead),
            ("t", fmt_num(total, 6)),
            ("from", from.into()),
            ("to", to.into()),
        ],
    );
    let r = ok(
        s.call(
            &thought,
            "convert_units",
            json!({"value": json_num(total), "from": from, "to": to}),
        ),
        "convert_units",
    )?;
    let x = fmt_num(num(&r, "value")?, 2);
    let vars = [
        ("x", x.clone()),
        ("t", fmt_num(total, 6)),
        ("from", fname.to_string()),
        ("to", tname.to_string()),
    ];
    let (thought, answer) = (
        fill(
            &s.plan_lead(
                "{t} {from} is {x} {to}.",
                &["Both steps are done: {t} {from} is {x} {to}."],
                &[],
            ),
            &vars,
        ),
        fill(
            s.any(&[
                "That is {t} {from} in total, or about {x} {to}.",
                "You cover about {x} {to} ({t} {from}).",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![x]))
}

pub(super) fn todo_then_complete(s: &mut Session) -> Result<TaskOutcome, String> {
    let t = s.pick(TODOS);
    let query = fill(
        s.pick_phrasing(
            &[
                "Add \"{t}\" to my to-do list and mark it as done.",
                "I already did this: {t}. Add it to my to-dos and check it off.",
                "Create the to-do \"{t}\" and then complete it.",
                "Log \"{t}\" as a to-do item that is already done.",
            ],
            &[
                "Put \"{t}\" on my to-do list and tick it off right away.",
                "\"{t}\" is finished already: add it as a to-do and mark it complete.",
                "Add the to-do \"{t}\", then set it to done.",
            ],
        ),
        &[("t", t.into())],
    );
    let lead = s.any(&["I first add the item, then complete it by its id. ", ""]);
    let lead = s.plan_lead(
        lead,
        &[
            "Two steps: add \"{t}\", then mark it done by its id. First I add it: ",
            "The query needs (1) \"{t}\" added and (2) that item marked as done. Step 1: ",
        ],
        &[("t", t.into())],
    );
    let r = todo(s, t, None, &lead)?;
    let id = num(&r, "id")? as i64;
    let thought = fill(
        s.any(&[
            "\"{t}\" was added as item {id}. I will mark it done with complete_todo.",
            "The new item has id {id}; complete_todo with id {id} marks it as done.",
        ]),
        &[("t", t.into()), ("id", id.to_string())],
    );
    let thought = s.plan_lead(
        &thought,
        &[
            "Step 1 is done: \"{t}\" is item {id}. Left: marking item {id} done with complete_todo.",
            "Done: item {id}. Still open: step 2, complete_todo with id {id}.",
        ],
        &[("t", t.into()), ("id", id.to_string())],
    );
    ok(
        s.call(&thought, "complete_todo", json!({"id": id})),
        "complete_todo",
    )?;
    let vars = [("t", t.to_string()), ("id", id.to_string())];
    let (thought, answer) = (
        fill(
            &s.plan_lead(
                "Item {id} is marked as done.",
                &["Both steps are done: item {id} is added and marked as done."],
                &[],
            ),
            &vars,
        ),
        fill(
            s.any(&[
                "I added \"{t}\" (item {id}) and marked it as done.",
                "\"{t}\" is on your list as item {id} and checked off.",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![t.to_string()]))
}

pub(super) fn alarms_then_list(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, _) = values::time(&mut s.rng, s.split);
    let b = loop {
        let (b, _) = values::time(&mut s.rng, s.split);
        if b != a {
            break b;
        }
    };
    let query = fill(
        s.pick_phrasing(
            &[
                "Set alarms for {a} and {b}, then tell me which alarms I have.",
                "I need two alarms, {a} and {b}. Set them and list my alarms.",
                "Add alarms at {a} and {b} and show me all my alarms.",
                "Please set an alarm at {a} and another at {b}; which alarms are set now?",
            ],
            &[
                "Set one alarm at {a} and one at {b}, then list all alarms.",
                "I want alarms at {a} and at {b}. After setting them, show the alarm list.",
                "Create two alarms ({a} and {b}) and tell me every alarm that is set.",
            ],
        ),
        &[("a", a.clone()), ("b", b.clone())],
    );
    let lead = s.any(&["Two alarms to set; first ", ""]);
    let vars = [("a", a.clone()), ("b", b.clone())];
    let lead = s.plan_lead(
        lead,
        &[
            "Three steps: an alarm at {a}, an alarm at {b}, then the list of alarms. First ",
            "The query needs (1) the {a} alarm, (2) the {b} alarm and (3) the alarm list. Step 1: ",
        ],
        &vars,
    );
    ok(alarm(s, &a, None, &lead), "set_alarm")?;
    let lead = s.plan_lead(
        &format!("The {a} alarm is set. "),
        &[
            "Step 1 is done: the {a} alarm is set. Next: the {b} alarm, then the list. ",
            "Done: {a}. Left: the {b} alarm and the list. ",
        ],
        &vars,
    );
    ok(alarm(s, &b, None, &lead), "set_alarm")?;
    let lead = s.plan_lead(
        "Both alarms are set. ",
        &[
            "Steps 1 and 2 are done: both alarms are set. Left: listing the alarms. ",
            "Both alarms are in. Still open: step 3, the list. ",
        ],
        &vars,
    );
    let r = list_tool(s, "list_alarms", &lead)?;
    let times: Vec<String> = r
        .get("alarms")
        .and_then(Value::as_array)
        .ok_or("synthetic task: list_alarms gave no list")?
        .iter()
        .map(|t| t["time"].as_str().unwrap_or("").to_string())
        .collect();
    let vars = [
        ("n", times.len().to_string()),
        ("times", times.join(" and ")),
    ];
    let (thought, answer) = (
        fill(
            &s.plan_lead(
                "There are {n} alarms: {times}.",
                &["All steps are done. There are {n} alarms: {times}."],
                &[],
            ),
            &vars,
        ),
        fill(
            s.any(&[
                "Your alarms are set for {times}.",
                "You have {n} alarms: {times}.",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![a, b]))
}

pub(super) fn days_and_weekday(s: &mut Session) -> Result<TaskOutcome, String> {
    let (a, b) = date_pair(s);
    if s.varied() && s.rng.random_bool(0.5) {
        return weekday_and_days(s, a, b);
    }
    let query = fill(
        s.pick_phrasing(
        &[
            "How many days are there from {a} to {b}, and what weekday is {b}?",
            "Count the days between {a} and {b}, and tell me the day of the week of {b}.",
            "My trip is from {a} to {b}. How many days is that, and on which weekday do I return?",
            "What weekday is {b}, and how many days after {a} is it?",
        ],
        &[
            "Tell me the number of days from {a} to {b} and the weekday of {b}.",
            "Between {a} and {b}, how many days pass? Also, which day of the week is {b}?",
            "Two things about {b}: its weekday, and its distance in days from {a}.",
        ],
        ),
        &[("a", iso(a)), ("b", iso(b))],
    );
    let lead = s.any(&["Two parts; first the number of days. ", ""]);
    let lead = s.plan_lead(
        lead,
        &[
            "The query asks two things: the days from {a} to {b}, and the weekday of {b}. First the days. ",
            "Two parts: (1) the number of days from {a} to {b}; (2) the weekday of {b}. I start with part 1. ",
        ],
        &[("a", iso(a)), ("b", iso(b))],
    );
    let n = count_days(s, &iso(a), &iso(b), &lead)?;
    let lead = fill(
        "There are {n} days. Now I need the weekday. ",
        &[("n", n.to_string())],
    );
    let lead = s.plan_lead(
        &lead,
        &[
            "Part 1 is done: {n} days. Still open: part 2, the weekday of {b}. ",
            "Done: {n} days. Left: the weekday of {b}. ",
        ],
        &[("n", n.to_string()), ("b", iso(b))],
    );
    let day = lookup_weekday(s, &iso(b), &lead)?;
    let vars = [
        ("n", n.to_string()),
        ("day", day.clone()),
        ("a", iso(a)),
        ("b", iso(b)),
    ];
    let (thought, answer) = (
        fill(
            &s.plan_lead(
                "I have both: {n} days, and {b} is a {day}.",
                &["Both parts are answered: {n} days, and {b} is a {day}. Nothing is left."],
                &[],
            ),
            &vars,
        ),
        fill(
            s.any(&[
                "There are {n} days from {a} to {b}, and {b} is a {day}.",
                "{b} is a {day}, {n} days after {a}.",
            ]),
            &vars,
        ),
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![n.to_string(), day]))
}

/// [`days_and_weekday`] asked weekday first (`SynthConfig::paraphrase`, training only): the
/// trajectory looks the weekday up first, then counts the days, so the planner learns to serve
/// the parts in the order asked and to conclude only when both are in.
fn weekday_and_days(
    s: &mut Session,
    a: (i64, i64, i64),
    b: (i64, i64, i64),
) -> Result<TaskOutcome, String> {
    let query = fill(
        s.any(&[
            "Which day of the week is {b}? And how many days separate it from {a}?",
            "First tell me the weekday of {b}, then the number of days from {a} to {b}.",
            "I need the weekday of {b} and the day count since {a}.",
            "On what weekday does {b} fall, and how many days have passed since {a} by then?",
            "Give me the day of the week for {b}, plus how many days lie between {a} and {b}.",
            "{b}: which weekday is it, and how far is it in days from {a}?",
        ]),
        &[("a", iso(a)), ("b", iso(b))],
    );
    let lead = s.any(&["Two parts; first the weekday. ", ""]);
    let day = lookup_weekday(s, &iso(b), lead)?;
    let lead = fill(
        s.any(&[
            "{b} is a {day}. Now I need the number of days from {a}. ",
            "The weekday is {day}. The second part is the day count from {a} to {b}. ",
        ]),
        &[("a", iso(a)), ("b", iso(b)), ("day", day.clone())],
    );
    let n = count_days(s, &iso(a), &iso(b), &lead)?;
    let vars = [
        ("n", n.to_string()),
        ("day", day.clone()),
        ("a", iso(a)),
        ("b", iso(b)),
    ];
    let thought = fill(
        "I have both: {b} is a {day}, and it is {n} days after {a}.",
        &vars,
    );
    let answer = fill(
        s.any(&[
            "{b} is a {day}, {n} days after {a}.",
            "{b} falls on a {day}; there are {n} days from {a} to {b}.",
        ]),
        &vars,
    );
    s.conclude(&thought, &answer);
    Ok(outcome(query, vec![n.to_string(), day]))
}
