//! Requests no tool can serve: the right step is `Next: give up.`.

use super::*;

pub(super) fn impossible(s: &mut Session) -> Result<TaskOutcome, String> {
    let i = {
        let owned: Vec<usize> = (0..IMPOSSIBLE.len()).filter(|i| s.split.owns(*i)).collect();
        s.any(&owned)
    };
    let (template, reason) = IMPOSSIBLE[i];
    let city = s.any(CITIES);
    let city2 = s.any(
        &CITIES
            .iter()
            .filter(|c| **c != city)
            .copied()
            .collect::<Vec<_>>(),
    );
    let query = fill(
        template,
        &[
            ("city", city.into()),
            ("city2", city2.into()),
            ("company", s.any(COMPANIES).to_string()),
            ("language", s.any(LANGUAGES).to_string()),
        ],
    );
    let thought = fill(
        s.any(&[
            "The available tools do arithmetic, conversions, dates, to-dos, calendar events, alarms and country facts, but {reason}, so I cannot do this.",
            "I cannot help with this request: {reason}.",
            "Looking at the tools, {reason}. There is nothing I can call, so I give up.",
            "This request needs something none of the tools offers ({reason}); I have to give up.",
        ]),
        &[("reason", reason.into())],
    );
    s.give_up(&thought);
    Ok(outcome(query, Vec::new()))
}

pub(super) fn unknown_country(s: &mut Session) -> Result<TaskOutcome, String> {
    let c = s.pick(UNKNOWN_COUNTRIES);
    let (_, queries) = s.any(COUNTRY_ASPECTS);
    let query = fill(s.pick(queries), &[("c", c.into())]);
    if country_lookup(s, c, "").is_ok() {
        return Err(format!("synthetic task: {c} unexpectedly known"));
    }
    let thought = fill(
        s.any(&[
            "The knowledge base has no entry for {c}, and none of its known countries is {c} under another name. No other tool has country facts, so I cannot answer.",
            "country_info does not cover {c} and no other tool can answer this, so I give up.",
            "{c} is not in the country list the tool knows, so the question cannot be answered with these tools.",
        ]),
        &[("c", c.into())],
    );
    s.give_up(&thought);
    Ok(outcome(query, Vec::new()))
}

pub(super) fn unknown_currency(s: &mut Session) -> Result<TaskOutcome, String> {
    let (code, name) = s.pick(UNKNOWN_CURRENCIES);
    let amt = values::amount(&mut s.rng, s.split);
    let i = s.rng.random_range(0..CURRENCIES.len());
    let (known, kname) = (CURRENCIES[i].0, s.any(CURRENCIES[i].1).to_string());
    let to_unknown = s.rng.random_bool(0.5);
    let (from, to, fname, tname) = if to_unknown {
        (known, code, kname, name.to_string())
    } else {
        (code, known, name.to_string(), kname)
    };
    let query = fill(
        s.pick(CURRENCY_QUERIES),
        &[("amt", amt.to_string()), ("from", fname), ("to", tname)],
    );
    let thought = fill(
        s.any(&[
            "I will call convert_currency with amount {amt}, from {from} and to {to}.",
            "I should use convert_currency to find how much {amt} {from} is in {to}.",
        ]),
        &[
            ("amt", amt.to_string()),
            ("from", from.into()),
            ("to", to.into()),
        ],
    );
    if s.call(
        &thought,
        "convert_currency",
        json!({"amount": amt, "from": from, "to": to}),
    )
    .is_ok()
    {
        return Err(format!(
            "synthetic task: currency {code} unexpectedly known"
        ));
    }
    let thought = fill(
        s.any(&[
            "convert_currency does not know {code}: its rate table has only EUR, USD, GBP, JPY, CHF, CNY, INR, CAD and AUD. No other tool converts currencies, so I cannot answer.",
            "The tool has no rate for {code}, so this conversion cannot be done; I give up.",
        ]),
        &[("code", code.into())],
    );
    s.give_up(&thought);
    Ok(outcome(query, Vec::new()))
}
