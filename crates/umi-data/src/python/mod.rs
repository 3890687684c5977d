//! Python behaviour the dataset ports reproduce, character for character: JSON as Python's `json`
//! module writes and reads it ([`json`]), literals as `ast.literal_eval` reads them
//! ([`literal`]), Python's `repr` and `str` of JSON values ([`repr`]), and code-point slicing and
//! character classes ([`text`]).

pub(crate) mod json;
pub(crate) mod literal;
pub(crate) mod repr;
pub(crate) mod text;
