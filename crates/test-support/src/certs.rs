// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Test certificates made with rcgen: a CA, server certificates and client certificates.
//! Shared by the end-to-end tests and the `gen-testdata` example.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// A certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that signs server and client certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

type Result<T> = std::result::Result<T, rcgen::Error>;

/// Long validity, so committed test data does not expire.
fn validity(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2026, 1, 1);
    params.not_after = date_time_ymd(2126, 1, 1);
}

impl Ca {
    /// A new self-signed CA.
    pub fn new(name: &str) -> Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    fn issue(&self, cn: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Result<Pem> {
        self.issue_with(cn, names, usage, validity)
    }

    fn issue_with(
        &self,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        validity: impl FnOnce(&mut CertificateParams),
    ) -> Result<Pem> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        validity(&mut params);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A server certificate for `localhost` and `127.0.0.1` (and `::1`).
    pub fn server(&self, cn: &str) -> Result<Pem> {
        self.issue(
            cn,
            &["localhost", "127.0.0.1", "::1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A server certificate as [`Ca::server`] whose validity ends on a given day, at midnight
    /// UTC.
    pub fn server_until(&self, cn: &str, year: i32, month: u8, day: u8) -> Result<Pem> {
        self.issue_with(
            cn,
            &["localhost", "127.0.0.1", "::1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            |params| {
                params.not_before = date_time_ymd(2026, 1, 1);
                params.not_after = date_time_ymd(year, month, day);
            },
        )
    }

    /// A client certificate.
    pub fn client(&self, cn: &str) -> Result<Pem> {
        self.issue(cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}
