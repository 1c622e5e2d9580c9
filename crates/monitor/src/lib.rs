//! Consumer-lag monitor and fleet dashboard (issue 10). Owned by the helper building it.
