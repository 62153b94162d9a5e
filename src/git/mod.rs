//! How git gets our tokens: what it is told (`config`), the helper protocol it speaks to us
//! (`helper`), the binary later steps run for it (`binary`), and the user's global git config
//! where no runner carries a step's environment (`global`).

pub(crate) mod binary;
pub(crate) mod config;
pub(crate) mod global;
pub(crate) mod helper;
