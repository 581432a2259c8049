//! Generator of website visits shaped like the reference dataset.
