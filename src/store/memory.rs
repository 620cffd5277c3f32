//! In-process store (todo)
