//! Accounts: who may register, with which password or from which addresses.
//!
//! Owns: building the immutable account table from the config and the bulk CSV file, and
//! matching a source address against an account's allowed addresses. Shared read-only by all
//! shards (`Arc<Accounts>`), swapped whole on reload.
//!
//! SKELETON: API contract; the accounts helper implements it.

use std::net::{IpAddr, SocketAddr};

use crate::config::{AuthMode, RegistrarConfig};
use crate::sip::digest::Hex;

/// An allowed source of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceMatch {
    Ip(IpAddr),
    IpPort(SocketAddr),
    /// Network and prefix length.
    Net(IpAddr, u8),
}

/// One account, ready for the hot path.
#[derive(Clone, Debug)]
pub struct Account {
    pub user: Box<str>,
    pub password: Box<str>,
    pub auth_mode: AuthMode,
    pub allowed: Vec<SourceMatch>,
    /// HA1 for MD5 and SHA-256 over (user, realm, password), computed once at load.
    pub ha1_md5: Hex,
    pub ha1_sha256: Hex,
}

impl Account {
    /// True when `src` matches the account's allowed sources (any source when the list is empty
    /// and the mode is Digest; IpPort mode compares the port too).
    pub fn source_allowed(&self, src: SocketAddr) -> bool {
        let _ = src;
        todo!()
    }
}

/// Index of an account in [`Accounts`].
pub type AccountId = u32;

/// The account table.
#[derive(Debug, Default)]
pub struct Accounts {
    list: Vec<Account>,
}

impl Accounts {
    /// From `[[registrar.accounts]]` plus the rows of `accounts_file` (if any). Errors name the
    /// file, line and field.
    pub fn build(cfg: &RegistrarConfig) -> Result<Accounts, String> {
        let _ = cfg;
        todo!()
    }
    /// Parse CSV text (`user,password[,allowed[,auth_mode]]`, `#` comments, optional header row).
    pub fn parse_csv(text: &str, realm: &str, origin: &str) -> Result<Vec<Account>, String> {
        let _ = (text, realm, origin);
        todo!()
    }
    /// Look up by SIP user (exact, case-sensitive).
    pub fn find(&self, user: &[u8]) -> Option<AccountId> {
        let _ = user;
        todo!()
    }
    /// Accounts in IP or IP+port mode that accept `src` (for requests without credentials).
    pub fn find_by_source(&self, src: SocketAddr) -> Option<AccountId> {
        let _ = src;
        todo!()
    }
    pub fn get(&self, id: AccountId) -> &Account {
        &self.list[id as usize]
    }
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
