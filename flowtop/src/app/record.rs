//! `flowtop record`: headless, writing every flow that ends to the journal.

use super::RunError;
use crate::config::Config;

/// Runs the recorder until SIGINT or SIGTERM.
pub fn run(_config: &Config) -> Result<(), RunError> {
    Err(RunError::Usage("flowtop record is not built yet".into()))
}
