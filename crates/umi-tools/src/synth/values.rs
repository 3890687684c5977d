//! Value pools for synthetic tasks, each split into a training part and a held-apart test part,
//! so test tasks ask about amounts, dates, names and phrasings the training set never shows.

use rand::Rng;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;

/// Which part of the data a task is drawn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training trajectories.
    Train,
    /// Held-apart test tasks.
    Test,
}

impl Split {
    /// Whether item `i` of a list belongs to this split: every 4th item (from index 3) is
    /// held apart for testing, the rest trains.
    pub fn owns(self, i: usize) -> bool {
        (i % 4 == 3) == (self == Split::Test)
    }
}

/// A random element of `items` among those `split` owns (every 4th for test, see
/// [`Split::owns`]); lists shorter than 4 are shared by both splits.
pub fn pick<T: Copy>(rng: &mut SmallRng, split: Split, items: &[T]) -> T {
    if items.len() < 4 {
        return *items.choose(rng).expect("non-empty pool");
    }
    let owned: Vec<T> = items
        .iter()
        .enumerate()
        .filter(|(i, _)| split.owns(*i))
        .map(|(_, t)| *t)
        .collect();
    *owned.choose(rng).expect("non-empty pool")
}

/// Fills `{name}` holes of `template` from `vars`.
pub fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// A whole amount (1..=2000): test amounts are ≡ 3 (mod 7), training amounts are not.
pub fn amount(rng: &mut SmallRng, split: Split) -> i64 {
    loop {
        let n = match rng.random_range(0..3) {
            0 => rng.random_range(1..=20) * 5,
            1 => rng.random_range(1..=200),
            _ => rng.random_range(1..=2000),
        };
        if (n % 7 == 3) == (split == Split::Test) {
            return n;
        }
    }
}

/// A small whole number in `lo..=hi` with the same split rule as [`amount`] where the range
/// allows it.
pub fn small(rng: &mut SmallRng, split: Split, lo: i64, hi: i64) -> i64 {
    for _ in 0..100 {
        let n = rng.random_range(lo..=hi);
        if (n % 7 == 3) == (split == Split::Test) {
            return n;
        }
    }
    rng.random_range(lo..=hi)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A calendar date between 2020 and 2032 as `(year, month, day)`: test dates fall on even days
/// of the month, training dates on odd ones.
pub fn date(rng: &mut SmallRng, split: Split) -> (i64, i64, i64) {
    loop {
        let y = rng.random_range(2020..=2032);
        let m = rng.random_range(1..=12);
        let d = rng.random_range(1..=days_in_month(y, m));
        if (d % 2 == 0) == (split == Split::Test) {
            return (y, m, d);
        }
    }
}

/// `YYYY-MM-DD`.
pub fn iso((y, m, d): (i64, i64, i64)) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A date as a person writes it (`2026-12-25`, `December 25, 2026` or `25 December 2026`).
pub fn spoken_date(rng: &mut SmallRng, (y, m, d): (i64, i64, i64)) -> String {
    match rng.random_range(0..4) {
        0 => format!("{} {d}, {y}", MONTHS[m as usize - 1]),
        1 => format!("{d} {} {y}", MONTHS[m as usize - 1]),
        _ => iso((y, m, d)),
    }
}

/// A date in a format the tools reject (`25/12/2026` or `12/25/2026` written with the month
/// name spelled out), with the ISO form the planner should correct it to.
pub fn slashed_date(rng: &mut SmallRng, (y, m, d): (i64, i64, i64)) -> String {
    if rng.random_bool(0.5) || d <= 12 {
        format!("{d:02}.{m:02}.{y}")
    } else {
        format!("{d}/{m}/{y}")
    }
}

/// A number as the tools print it and as answers state it: whole numbers without a fraction,
/// others rounded to at most `digits` decimals with trailing zeros dropped.
pub fn fmt_num(x: f64, digits: i32) -> String {
    let p = 10f64.powi(digits);
    let r = (x * p).round() / p;
    if r.fract() == 0.0 && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        let s = format!("{r:.*}", digits as usize);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Currencies the demo server knows: code and the names people use.
pub const CURRENCIES: &[(&str, &[&str])] = &[
    ("USD", &["US dollars", "dollars", "USD"]),
    ("EUR", &["euros", "EUR", "euro"]),
    ("GBP", &["British pounds", "pounds sterling", "GBP"]),
    ("JPY", &["Japanese yen", "yen", "JPY"]),
    ("CHF", &["Swiss francs", "CHF", "francs"]),
    ("CNY", &["Chinese yuan", "yuan", "CNY"]),
    ("INR", &["Indian rupees", "rupees", "INR"]),
    ("CAD", &["Canadian dollars", "CAD", "Canadian dollars"]),
    ("AUD", &["Australian dollars", "AUD", "Australian dollars"]),
];

/// Currencies the server does not know (for tasks that must end in giving up).
pub const UNKNOWN_CURRENCIES: &[(&str, &str)] = &[
    ("BRL", "Brazilian reais"),
    ("MXN", "Mexican pesos"),
    ("SEK", "Swedish kronor"),
    ("ZAR", "South African rand"),
    ("KRW", "South Korean won"),
    ("TRY", "Turkish lira"),
    ("NOK", "Norwegian kroner"),
    ("THB", "Thai baht"),
];

/// Countries in the server's knowledge base.
pub const COUNTRIES: &[&str] = &[
    "France",
    "Germany",
    "Italy",
    "Spain",
    "United Kingdom",
    "United States",
    "Canada",
    "Japan",
    "China",
    "India",
    "Switzerland",
    "Australia",
];

/// Names people use that the knowledge base does not (the error lists the known names).
pub const COUNTRY_ALIASES: &[(&str, &str)] = &[
    ("the UK", "United Kingdom"),
    ("the USA", "United States"),
    ("Britain", "United Kingdom"),
    ("America", "United States"),
    ("the US", "United States"),
    ("Great Britain", "United Kingdom"),
    ("England", "United Kingdom"),
    ("the United States of America", "United States"),
];

/// Countries the knowledge base lacks.
pub const UNKNOWN_COUNTRIES: &[&str] = &[
    "Brazil",
    "Mexico",
    "Egypt",
    "Norway",
    "Kenya",
    "Argentina",
    "Sweden",
    "Nigeria",
    "Peru",
    "Poland",
    "Vietnam",
    "Chile",
];

/// Units by kind: symbol and spoken names.
pub const UNITS: &[(&str, &str, &[&str])] = &[
    ("length", "km", &["kilometers", "km", "kilometres"]),
    ("length", "mi", &["miles", "mi", "miles"]),
    ("length", "m", &["meters", "m", "metres"]),
    ("length", "ft", &["feet", "ft", "feet"]),
    ("length", "in", &["inches", "in", "inches"]),
    ("length", "cm", &["centimeters", "cm", "centimetres"]),
    ("length", "yd", &["yards", "yd", "yards"]),
    ("length", "mm", &["millimeters", "mm", "millimetres"]),
    ("mass", "kg", &["kilograms", "kg", "kilos"]),
    ("mass", "lb", &["pounds", "lb", "lbs"]),
    ("mass", "g", &["grams", "g", "grams"]),
    ("mass", "oz", &["ounces", "oz", "ounces"]),
    ("temperature", "C", &["degrees Celsius", "°C", "Celsius"]),
    (
        "temperature",
        "F",
        &["degrees Fahrenheit", "°F", "Fahrenheit"],
    ),
    ("temperature", "K", &["kelvin", "K", "kelvin"]),
];

/// To-do titles.
pub const TODOS: &[&str] = &[
    "buy milk",
    "call the plumber",
    "renew my passport",
    "book a dentist appointment",
    "pay the electricity bill",
    "water the plants",
    "send the tax forms",
    "pick up the dry cleaning",
    "return the library books",
    "fix the bike tire",
    "order printer ink",
    "clean the garage",
    "email the landlord",
    "buy a birthday gift for Anna",
    "change the car oil",
    "back up my laptop",
    "cancel the gym membership",
    "write the quarterly report",
    "schedule a haircut",
    "replace the smoke detector battery",
    "buy train tickets",
    "prepare the slides for Monday",
    "walk the dog",
    "update my CV",
];

/// Calendar event titles.
pub const EVENTS: &[&str] = &[
    "team meeting",
    "dentist appointment",
    "lunch with Sara",
    "project review",
    "yoga class",
    "parent-teacher meeting",
    "flight to Berlin",
    "doctor's appointment",
    "book club",
    "quarterly planning",
    "car service",
    "piano lesson",
    "job interview",
    "birthday party",
    "code review",
    "family dinner",
];

/// Alarm labels.
pub const ALARM_LABELS: &[&str] = &[
    "wake up",
    "take medicine",
    "gym",
    "call mom",
    "leave for work",
    "meeting",
    "feed the cat",
    "pick up the kids",
    "start cooking",
    "stretch",
    "water the garden",
    "bedtime",
];

/// A time `HH:MM` and how a person might say it when it is not in that form (`7am`, `6:30 pm`).
pub fn time(rng: &mut SmallRng, split: Split) -> (String, String) {
    loop {
        let h: u32 = rng.random_range(5..=22);
        let m: u32 = *[0u32, 15, 30, 45, 10, 20, 40, 50]
            .choose(rng)
            .expect("minutes");
        if ((h + m) % 7 == 3) != (split == Split::Test) {
            continue;
        }
        let hhmm = format!("{h:02}:{m:02}");
        let (h12, ampm) = match h {
            0 => (12, "am"),
            1..=11 => (h, "am"),
            12 => (12, "pm"),
            _ => (h - 12, "pm"),
        };
        let spoken = match (m, rng.random_range(0..3)) {
            (0, 0) => format!("{h12}{ampm}"),
            (0, _) => format!("{h12} {ampm}"),
            (_, 0) => format!("{h12}:{m:02}{ampm}"),
            _ => format!("{h12}:{m:02} {ampm}"),
        };
        return (hhmm, spoken);
    }
}

/// Requests no demo tool can serve, with a reason the planner states when giving up.
pub const IMPOSSIBLE: &[(&str, &str)] = &[
    (
        "What will the weather be like in {city} tomorrow?",
        "none of the available tools gives weather forecasts",
    ),
    (
        "Send an email to my boss saying I will be late.",
        "none of the available tools can send emails",
    ),
    (
        "Book me a flight to {city} for next Friday.",
        "none of the available tools can book flights",
    ),
    (
        "What is the current stock price of {company}?",
        "none of the available tools has stock prices",
    ),
    (
        "Translate 'good morning' into {language}.",
        "none of the available tools can translate text",
    ),
    (
        "What are today's top news headlines?",
        "none of the available tools provides news",
    ),
    (
        "Play some relaxing jazz music.",
        "none of the available tools can play music",
    ),
    (
        "Reserve a table for two at an Italian restaurant tonight.",
        "none of the available tools can make reservations",
    ),
    (
        "Who won the football match last night?",
        "none of the available tools has sports results",
    ),
    (
        "How long does it take to drive from {city} to {city2}?",
        "none of the available tools gives driving directions or travel times",
    ),
    (
        "Order a large pepperoni pizza to my home.",
        "none of the available tools can order food",
    ),
    (
        "Text my sister that dinner is at eight.",
        "none of the available tools can send messages",
    ),
    (
        "What is the air quality in {city} right now?",
        "none of the available tools has air-quality data",
    ),
    (
        "Turn off the lights in the living room.",
        "none of the available tools controls smart-home devices",
    ),
    (
        "Find me a cheap hotel in {city} for this weekend.",
        "none of the available tools searches hotels",
    ),
    (
        "What time does the sun set in {city} today?",
        "none of the available tools knows sunset times",
    ),
];

/// Cities for the impossible requests.
pub const CITIES: &[&str] = &[
    "Paris", "Tokyo", "Berlin", "Madrid", "Toronto", "Sydney", "Rome", "Lisbon",
];

/// Companies for the impossible requests.
pub const COMPANIES: &[&str] = &["Apple", "Tesla", "Siemens", "Toyota", "Nestle", "Shell"];

/// Languages for the impossible requests.
pub const LANGUAGES: &[&str] = &["German", "Japanese", "Spanish", "Italian", "Korean"];
