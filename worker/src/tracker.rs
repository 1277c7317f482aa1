//! Tracker: variables, the object registry, paths, value JSON, change sets. (Comes with the
//! backend.)
