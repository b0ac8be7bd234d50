//! `flowtop history`: reads the journal and prints what it asks for.

use super::RunError;
use crate::config::Config;

/// Prints the flows (or the summary) `config.command`'s history
/// arguments select, from `config.journal`.
pub fn run(_config: &Config) -> Result<(), RunError> {
    Err(RunError::Usage("flowtop history is not built yet".into()))
}
