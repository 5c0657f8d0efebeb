//! Logins on top of libunftp's `Authenticator`: who may log in, as which class of
//! [`crate::account`], and the per-IP lockout.
//!
//! Each `Server::service()` call builds its own failed-login cache, so the lockout lives here:
//! - [`Accounts`] is shared by every connection: the accounts from the config, and the per-IP
//!   failure counter ([`Lockout`]) that refuses an IP after too many failures within a window.
//! - [`SessionAuth`] is made per connection. It implements both `Authenticator` and
//!   `UserDetailProvider`, handing the [`FtpUser`] it resolved (with the e-mail an anonymous user
//!   gave) from one to the other.
//!
//! Unknown user, wrong password, expired guest and a locked-out IP all get the same 530 reply
//! (libunftp maps every authentication error to it); the [`LoginRefusal`] goes to the log only,
//! as one `warn` line per refused login that names the reason (and says when this failure locked
//! the address out). libunftp is handed the matching error, so that its own line (at `info`
//! since libunftp patch 34) names the same reason.
//! Passwords are argon2id, verified on the blocking pool because argon2 is slow on purpose; an
//! unknown user is verified against a dummy hash with the same cost (computed there too) so
//! timing does not reveal which names exist.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use async_trait::async_trait;
use time::OffsetDateTime;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetailError, UserDetailProvider,
};

use crate::account::{Access, Class, FtpUser};
use crate::config::{Config, LoginPolicy, TlsPolicy};

/// Hashes a password with argon2id and the argon2 crate's default cost (19 MiB, 2 passes),
/// returning the PHC string that goes into the config.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Hashes with an explicit argon2id cost (`m_kib` KiB of memory, `t` passes). Tests use a low
/// cost so that unoptimised builds stay fast; production hashes should use [`hash_password`].
pub fn hash_password_with_cost(
    password: &str,
    m_kib: u32,
    t: u32,
) -> Result<String, argon2::password_hash::Error> {
    let params = argon2::Params::new(m_kib, t, 1, None)?;
    let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut OsRng);
    Ok(a.hash_password(password.as_bytes(), &salt)?.to_string())
}

fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Per-IP failed-login counter with a sliding window and a lockout period. Pure bookkeeping:
/// every method takes `now`, so it is tested without sleeping.
#[derive(Debug)]
pub struct Lockout {
    policy: LoginPolicy,
    ips: Mutex<HashMap<IpAddr, IpRecord>>,
}

#[derive(Debug, Default)]
struct IpRecord {
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
    /// Guesses being checked right now: they count against the limit from the moment they are
    /// made, so parallel or pipelined guesses cannot all be checked before the first failure
    /// is recorded.
    pending: u32,
}

/// A login attempt admitted by [`Lockout::begin_guess`]; say how it ended with
/// [`Guess::failed`], or drop it (success, or no password check made).
#[derive(Debug)]
pub struct Guess<'a> {
    lockout: &'a Lockout,
    key: IpAddr,
}

impl Guess<'_> {
    /// The guess was wrong: it becomes a failure in the window. Returns whether the address is
    /// locked out now.
    pub fn failed(self, now: Instant) -> bool {
        let key = self.key;
        let lockout = self.lockout;
        drop(self);
        lockout.record_failure(key, now)
    }
}

impl Drop for Guess<'_> {
    fn drop(&mut self) {
        let mut map = self.lockout.lock();
        if let Some(r) = map.get_mut(&self.key) {
            r.pending = r.pending.saturating_sub(1);
            // A record with nothing in it is not kept (every login makes one).
            if r.pending == 0 && r.failures.is_empty() && r.locked_until.is_none() {
                map.remove(&self.key);
            }
        }
    }
}

/// The address failures are counted under: IPv4 (also when it arrives IPv4-mapped on a dual-stack
/// `[::]` listener) as is, IPv6 by its /64 prefix. One IPv6 host usually owns a whole /64 and
/// can pick a new source address for every connection, which would otherwise reset its count.
fn lockout_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Entries kept before stale ones are swept, so a flood of source addresses cannot grow the map
/// without bound.
const LOCKOUT_SWEEP_AT: usize = 4096;

impl Lockout {
    /// A counter following `policy`.
    pub fn new(policy: LoginPolicy) -> Self {
        Self {
            policy,
            ips: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, IpRecord>> {
        self.ips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits one login attempt from `ip`, or refuses it (`None`) when the address is locked
    /// out or when its failures in the window plus the attempts still being checked already
    /// reach the limit.
    pub fn begin_guess(&self, ip: IpAddr, now: Instant) -> Option<Guess<'_>> {
        let key = lockout_key(ip);
        let mut map = self.lock();
        self.sweep(&mut map, now);
        let rec = map.entry(key).or_default();
        if rec.locked_until.is_some_and(|until| now < until) {
            return None;
        }
        while rec
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.policy.window)
        {
            rec.failures.pop_front();
        }
        if rec.failures.len() + rec.pending as usize >= self.policy.max_failures as usize {
            return None;
        }
        rec.pending += 1;
        Some(Guess { lockout: self, key })
    }

    /// Drops expired records once the map is large, so that it stays bounded.
    fn sweep(&self, map: &mut HashMap<IpAddr, IpRecord>, now: Instant) {
        if map.len() < LOCKOUT_SWEEP_AT {
            return;
        }
        let window = self.policy.window;
        map.retain(|_, r| {
            r.pending > 0
                || r.locked_until.is_some_and(|u| now < u)
                || r.failures
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
        });
    }

    /// Whether `ip` is refused at `now`.
    pub fn is_locked(&self, ip: IpAddr, now: Instant) -> bool {
        self.lock()
            .get(&lockout_key(ip))
            .and_then(|r| r.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a failure; returns `true` when this failure starts a lockout.
    ///
    /// A successful login does not reset the count: otherwise an attacker could interleave
    /// anonymous logins with password guesses.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.lock();
        self.sweep(&mut map, now);
        let rec = map.entry(lockout_key(ip)).or_default();
        while rec
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.policy.window)
        {
            rec.failures.pop_front();
        }
        rec.failures.push_back(now);
        if rec.failures.len() >= self.policy.max_failures as usize
            && rec.locked_until.is_none_or(|u| now >= u)
        {
            rec.locked_until = Some(now + self.policy.lockout);
            rec.failures.clear();
            return true;
        }
        false
    }
}

/// Why a login was refused. Every reason gets the same `530` reply, so that a client cannot
/// tell which names exist or that it is locked out; the reason goes to the log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefusal {
    /// The client's address is locked out after repeated failures.
    #[error("client IP is locked out after repeated failures")]
    LockedOut,
    /// `anonymous` / `ftp` with an empty password.
    #[error("anonymous login without a password")]
    AnonymousWithoutPassword,
    /// No account has that name.
    #[error("unknown user")]
    UnknownUser,
    /// The password does not match the account's hash.
    #[error("wrong password")]
    WrongPassword,
    /// A guest login past its `expires` date.
    #[error("guest login has expired")]
    Expired,
    /// The password check itself could not run.
    #[error("password verification unavailable")]
    VerifierUnavailable,
    /// A login over TLS for a class whose `tls` is `off`.
    #[error("TLS is off for this account class")]
    TlsOff,
}

impl LoginRefusal {
    /// The error handed to libunftp: the same reason, so that its log line (if shown) does not
    /// name another one. The client's reply is `530` whatever it is.
    fn to_auth_error(self) -> AuthenticationError {
        match self {
            LoginRefusal::UnknownUser => AuthenticationError::BadUser,
            LoginRefusal::WrongPassword | LoginRefusal::AnonymousWithoutPassword => {
                AuthenticationError::BadPassword
            }
            LoginRefusal::LockedOut => AuthenticationError::IpDisallowed,
            LoginRefusal::Expired | LoginRefusal::VerifierUnavailable | LoginRefusal::TlsOff => {
                AuthenticationError::new(self.to_string())
            }
        }
    }
}

#[derive(Debug)]
struct Account {
    password: String,
    class: Class,
    access: Access,
    home: PathBuf,
    expires: Option<OffsetDateTime>,
    max_rate: u64,
    tls: TlsPolicy,
}

/// The accounts of a configuration plus the shared lockout state. One per server.
#[derive(Debug)]
pub struct Accounts {
    root: PathBuf,
    anonymous: Option<crate::config::AnonymousConfig>,
    named: HashMap<String, Account>,
    lockout: Lockout,
    dummy_hash: OnceLock<String>,
    /// The anonymous class's TLS policy.
    anonymous_tls: TlsPolicy,
    /// The TLS policy of a name no account has: the strictest of the named classes', so that
    /// the reply to `USER` does not tell which names exist.
    unknown_tls: TlsPolicy,
    /// Bounds the argon2 verifications running at once. Each one allocates the hash's memory
    /// cost (19 MiB by default), so `max_connections` sessions sending PASS together would
    /// otherwise need `max_connections` x 19 MiB and as many blocking threads.
    verify_slots: tokio::sync::Semaphore,
}

/// The longest anonymous password (e-mail) kept for logs and the xferlog; the rest is cut.
const MAX_ANON_EMAIL: usize = 128;

/// How many password verifications may run at once: the CPUs, at least 2.
fn verify_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

impl Accounts {
    /// Builds the account table from a validated configuration.
    pub fn new(cfg: &Config) -> Self {
        let mut named = HashMap::new();
        for u in &cfg.users {
            named.insert(
                u.name.clone(),
                Account {
                    password: u.password.clone(),
                    class: Class::Real,
                    access: Access::Real { write: u.write },
                    home: u.home.clone(),
                    expires: None,
                    max_rate: u.max_rate,
                    tls: cfg.tls_policy(Class::Real, u.tls),
                },
            );
        }
        if let Some(area) = &cfg.guest_area {
            for g in &cfg.guests {
                named.insert(
                    g.name.clone(),
                    Account {
                        password: g.password.clone(),
                        class: Class::Guest,
                        access: Access::Guest {
                            upload: area.upload,
                        },
                        home: area.home.clone(),
                        expires: g.expires,
                        max_rate: area.max_rate,
                        tls: cfg.tls_policy(Class::Guest, area.tls),
                    },
                );
            }
        }
        let unknown_tls = if named
            .values()
            .any(|a: &Account| a.tls == TlsPolicy::Required)
        {
            TlsPolicy::Required
        } else {
            TlsPolicy::Optional
        };
        Self {
            anonymous_tls: cfg
                .tls_policy(Class::Anonymous, cfg.anonymous.as_ref().and_then(|a| a.tls)),
            unknown_tls,
            root: cfg.root.clone(),
            anonymous: cfg.anonymous.clone(),
            named,
            lockout: Lockout::new(cfg.login_policy.clone()),
            dummy_hash: OnceLock::new(),
            verify_slots: tokio::sync::Semaphore::new(verify_parallelism()),
        }
    }

    /// The TLS policy for the login name `name` as sent with `USER`: its class's, or for a
    /// name no account has, the strictest of the named classes' (the same reply whether the
    /// name exists or not).
    pub fn tls_policy(&self, name: &str) -> TlsPolicy {
        let lower = name.to_ascii_lowercase();
        if (lower == "anonymous" || lower == "ftp") && self.anonymous.is_some() {
            return self.anonymous_tls;
        }
        self.named.get(name).map_or(self.unknown_tls, |a| a.tls)
    }

    /// The shared per-IP lockout.
    pub fn lockout(&self) -> &Lockout {
        &self.lockout
    }

    /// A hash to verify unknown users against, with the same cost as a configured one. Costly
    /// on first use: call it on the blocking pool.
    fn dummy_hash(&self) -> &str {
        self.dummy_hash.get_or_init(|| {
            let params = self
                .named
                .values()
                .find_map(|a| PasswordHash::new(&a.password).ok())
                .and_then(|h| argon2::Params::try_from(&h).ok())
                .unwrap_or_default();
            let a = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let salt = SaltString::generate(&mut OsRng);
            a.hash_password(b"no such user, no such password", &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
    }

    fn user(&self, name: &str, class: Class, access: Access, home: &Path) -> FtpUser {
        FtpUser::new(name, class, access, &self.root, home)
    }

    /// Checks a login. `Err` is the reason, for the log only: the client always sees 530.
    pub async fn check(
        self: &Arc<Self>,
        username: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<FtpUser, LoginRefusal> {
        let Some(guess) = self.lockout.begin_guess(ip, Instant::now()) else {
            return Err(LoginRefusal::LockedOut);
        };
        let result = self.check_credentials(username, password).await;
        if result.is_err() {
            // Whether this failure locked the address out shows in `is_locked` afterwards; the
            // refusal's log line says so (one line per refused login).
            guess.failed(Instant::now());
        }
        result
    }

    /// The password check itself, without the lockout.
    async fn check_credentials(
        self: &Arc<Self>,
        username: &str,
        password: &str,
    ) -> Result<FtpUser, LoginRefusal> {
        let lower = username.to_ascii_lowercase();
        if lower == "anonymous" || lower == "ftp" {
            if let Some(anon) = &self.anonymous {
                if password.is_empty() {
                    return Err(LoginRefusal::AnonymousWithoutPassword);
                }
                let mut u = self.user(
                    "anonymous",
                    Class::Anonymous,
                    Access::Anonymous {
                        upload_dir: anon.upload_dir.clone(),
                    },
                    &anon.home,
                );
                u.anon_email = Some(truncate_chars(password, MAX_ANON_EMAIL).to_string());
                u.max_rate = anon.max_rate;
                return Ok(u);
            }
        }
        let account = self.named.get(username);
        let known = account.map(|a| a.password.clone());
        let pw = password.to_string();
        // The semaphore is never closed, so `acquire` cannot fail; refuse if it somehow does.
        let Ok(_slot) = self.verify_slots.acquire().await else {
            return Err(LoginRefusal::VerifierUnavailable);
        };
        // Both the dummy hash (computed once, as costly as a real one) and the verification
        // run on the blocking pool: argon2 is slow on purpose, and on a runtime worker it would
        // stall every session sharing that worker.
        let me = Arc::clone(self);
        let ok = tokio::task::spawn_blocking(move || {
            let phc = known.unwrap_or_else(|| me.dummy_hash().to_string());
            verify(&pw, &phc)
        })
        .await
        .unwrap_or(false);
        match account {
            None => Err(LoginRefusal::UnknownUser),
            Some(_) if !ok => Err(LoginRefusal::WrongPassword),
            Some(a) if a.expires.is_some_and(|e| OffsetDateTime::now_utc() > e) => {
                Err(LoginRefusal::Expired)
            }
            Some(a) => {
                let mut u = self.user(username, a.class, a.access.clone(), &a.home);
                u.max_rate = a.max_rate;
                Ok(u)
            }
        }
    }
}

/// The first `max` characters of `s` (whole characters, never a split UTF-8 sequence).
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The per-connection authenticator and user-detail provider.
#[derive(Debug)]
pub struct SessionAuth {
    accounts: Arc<Accounts>,
    resolved: Mutex<Option<FtpUser>>,
}

impl SessionAuth {
    /// A fresh per-connection authenticator over the shared accounts.
    pub fn new(accounts: Arc<Accounts>) -> Self {
        Self {
            accounts,
            resolved: Mutex::new(None),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<FtpUser>> {
        self.resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Authenticator for SessionAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let password = creds.password.as_deref().unwrap_or("");
        let ip = creds.source_ip;
        // A class with `tls = "off"` logs in without TLS only (`required` is enforced by
        // libunftp before USER, patch 36).
        let over_tls = matches!(
            creds.command_channel_security,
            unftp_core::auth::ChannelEncryptionState::Tls
        );
        let checked = if over_tls && self.accounts.tls_policy(username) == TlsPolicy::Off {
            Err(LoginRefusal::TlsOff)
        } else {
            self.accounts.check(username, password, ip).await
        };
        match checked {
            Ok(user) => {
                match &user.anon_email {
                    Some(email) => tracing::info!(
                        class = user.class.as_str(),
                        user = %user.name,
                        email = %email,
                        peer = %ip,
                        result = "ok",
                        "login"
                    ),
                    None => tracing::info!(
                        class = user.class.as_str(),
                        user = %user.name,
                        peer = %ip,
                        result = "ok",
                        "login"
                    ),
                }
                let principal = Principal {
                    username: user.name.clone(),
                };
                *self.slot() = Some(user);
                Ok(principal)
            }
            Err(reason) => {
                // Failures were counted by `check` (a refusal because of the lockout is not a
                // new guess: counting it would extend the lockout while the client keeps trying).
                // One line per refused login; the one whose failure started a lockout says so.
                let locked_now = reason != LoginRefusal::LockedOut
                    && self.accounts.lockout().is_locked(ip, Instant::now());
                if locked_now {
                    tracing::warn!(
                        user = %username, peer = %ip, result = "refused", %reason,
                        lockout = "started: too many failed logins from this address", "login"
                    );
                } else {
                    tracing::warn!(user = %username, peer = %ip, result = "refused", %reason, "login");
                }
                Err(reason.to_auth_error())
            }
        }
    }

    fn name(&self) -> &str {
        "ftp-server accounts"
    }
}

#[async_trait]
impl UserDetailProvider for SessionAuth {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        match self.slot().take() {
            Some(u) if u.name == principal.username => Ok(u),
            _ => Err(UserDetailError::UserNotFound {
                username: principal.username.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy() -> LoginPolicy {
        LoginPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        }
    }

    #[test]
    fn lockout_after_max_failures_in_window() {
        let l = Lockout::new(policy());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        assert!(!l.record_failure(ip, t0));
        assert!(!l.record_failure(ip, t0 + Duration::from_secs(1)));
        assert!(!l.is_locked(ip, t0 + Duration::from_secs(2)));
        assert!(l.record_failure(ip, t0 + Duration::from_secs(2)));
        assert!(l.is_locked(ip, t0 + Duration::from_secs(3)));
        assert!(!l.is_locked(other, t0 + Duration::from_secs(3)));
        assert!(!l.is_locked(ip, t0 + Duration::from_secs(303)));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = Lockout::new(policy());
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(!l.record_failure(a, t0));
        assert!(!l.record_failure(b, t0));
        assert!(l.record_failure(a, t0), "same /64: third failure locks");
        assert!(l.is_locked(b, t0));
        assert!(!l.is_locked(c, t0), "another /64");

        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        let plain: IpAddr = [192, 0, 2, 7].into();
        let neighbour: IpAddr = "::ffff:192.0.2.8".parse().expect("ip");
        for _ in 0..3 {
            l.record_failure(mapped, t0);
        }
        assert!(
            l.is_locked(plain, t0),
            "mapped and plain IPv4 are one client"
        );
        assert!(
            !l.is_locked(neighbour, t0),
            "mapped IPv4 is not lumped into a /64"
        );
    }

    #[test]
    fn failures_outside_window_do_not_count() {
        let l = Lockout::new(policy());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        assert!(!l.record_failure(ip, t0));
        assert!(!l.record_failure(ip, t0 + Duration::from_secs(61)));
        assert!(!l.record_failure(ip, t0 + Duration::from_secs(62)));
        assert!(l.record_failure(ip, t0 + Duration::from_secs(63)));
    }

    #[test]
    fn map_is_bounded() {
        let l = Lockout::new(policy());
        let t0 = Instant::now();
        for i in 0..(LOCKOUT_SWEEP_AT as u32 + 10) {
            l.record_failure(IpAddr::from(i.to_be_bytes()), t0);
        }
        let later = t0 + Duration::from_secs(120);
        l.record_failure([1, 2, 3, 4].into(), later);
        assert!(l.lock().len() < 10);
    }

    #[test]
    fn guesses_in_flight_count_and_settled_ones_leave_no_record() {
        let l = Lockout::new(policy());
        let ip: IpAddr = [10, 0, 0, 3].into();
        let t0 = Instant::now();
        let (a, b, c) = (
            l.begin_guess(ip, t0).expect("1st"),
            l.begin_guess(ip, t0).expect("2nd"),
            l.begin_guess(ip, t0).expect("3rd"),
        );
        assert!(
            l.begin_guess(ip, t0).is_none(),
            "three in flight: the limit"
        );
        drop((a, b)); // two succeeded
        assert!(!c.failed(t0), "one failure does not lock");
        let d = l.begin_guess(ip, t0).expect("room again");
        drop(d);
        // Successes from many addresses leave nothing behind.
        for i in 0..100u32 {
            drop(l.begin_guess(IpAddr::from((i + 1000).to_be_bytes()), t0));
        }
        assert_eq!(l.lock().len(), 1, "only the address with a failure");
    }

    #[test]
    fn truncate_keeps_whole_characters() {
        assert_eq!(truncate_chars("me@example.org", 128), "me@example.org");
        assert_eq!(truncate_chars("ünïcödé", 3), "ünï");
        assert_eq!(truncate_chars("", 3), "");
        assert_eq!(truncate_chars(&"x".repeat(10_000), 128).len(), 128);
    }

    /// The dummy hash of an unknown user (and every verification) costs as much as a real
    /// check on purpose; it must cost it on the blocking pool, not on a runtime worker, where it
    /// would stall every session sharing that worker. On a current-thread runtime a ticker must
    /// keep ticking while an unknown user's login is checked.
    #[test]
    fn an_unknown_users_check_does_not_block_the_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut cfg = Config::new(std::env::temp_dir());
        cfg.users.push(crate::config::RealUser {
            name: "alice".into(),
            // Costly enough that computing it takes far longer than the ticker's period.
            password: hash_password_with_cost("pw", 16 << 10, 2).expect("hash"),
            home: PathBuf::new(),
            write: false,
            max_rate: 0,
            tls: None,
        });
        let accounts = Arc::new(Accounts::new(&cfg));
        let (max_gap, took) = rt.block_on(async {
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let ticker = tokio::spawn({
                let done = done.clone();
                async move {
                    let mut last = Instant::now();
                    let mut max_gap = Duration::ZERO;
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        max_gap = max_gap.max(last.elapsed());
                        last = Instant::now();
                    }
                    max_gap
                }
            });
            // Let the ticker start before the check.
            tokio::task::yield_now().await;
            let t0 = Instant::now();
            let r = accounts
                .check("nobody", "guess", [10, 0, 0, 9].into())
                .await;
            let took = t0.elapsed();
            assert!(matches!(r, Err(LoginRefusal::UnknownUser)), "{r:?}");
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (ticker.await.expect("ticker"), took)
        });
        assert!(
            max_gap < took / 4,
            "the runtime was blocked for {max_gap:?} of a {took:?} check"
        );
    }

    /// Guesses are counted when they are made, not when their check ends: many at once from one
    /// address (parallel connections, or pipelined logins) get no more password checks than
    /// the policy allows.
    #[test]
    fn concurrent_guesses_get_no_more_checks_than_the_policy_allows() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::new(dir.path());
        cfg.login_policy = policy();
        cfg.users.push(crate::config::RealUser {
            name: "alice".into(),
            password: hash_password_with_cost("pw", 1024, 2).expect("hash"),
            home: PathBuf::new(),
            write: false,
            max_rate: 0,
            tls: None,
        });
        let accounts = Arc::new(Accounts::new(&cfg));
        let ip: IpAddr = [10, 0, 0, 9].into();
        let results = rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..40 {
                let a = accounts.clone();
                tasks.spawn(async move { a.check("alice", &format!("guess{i}"), ip).await });
            }
            tasks.join_all().await
        });
        let checked = results
            .iter()
            .filter(|r| matches!(r, Err(LoginRefusal::WrongPassword)))
            .count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(LoginRefusal::LockedOut)))
            .count();
        assert_eq!(checked, 3, "{results:?}");
        assert_eq!(checked + refused, 40);
        // The address is now locked: even the right password is not checked.
        let right = rt.block_on(accounts.check("alice", "pw", ip));
        assert!(matches!(right, Err(LoginRefusal::LockedOut)), "{right:?}");
        // Another address is not affected.
        let other = rt.block_on(accounts.check("alice", "pw", [10, 0, 0, 10].into()));
        assert!(other.is_ok(), "{other:?}");
    }

    #[test]
    fn hash_roundtrip() {
        let h = hash_password_with_cost("s3cret", 64, 1).expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("s3cret", &h));
        assert!(!verify("wrong", &h));
    }
}
