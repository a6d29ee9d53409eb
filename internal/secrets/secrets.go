// Package secrets owns a deployment's credentials: the certificate
// authority and per-site certificates that lock the links between sites
// (mutual TLS on NATS routes, TLS on NATS client ports), the NATS users
// every server admits (one per site's gateway, one for operators), and the
// files that carry them: one site file per site and one admin file.
//
// `salamander certs` writes them with Generate; `serve --secrets`,
// `salamander admin --creds` and `salamander dev` read them with LoadSite
// and LoadAdmin. Directories are 0700 and files 0600: a site file holds its
// gateway's password and its private key.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Roles of the NATS users a server admits.
const (
	// RoleGateway may append to and read the log, subscribe to its
	// announcements and to ephemeral subjects, and create missing streams;
	// it may not delete, purge, update, snapshot or restore them.
	RoleGateway = "gateway"
	// RoleAdmin may do anything.
	RoleAdmin = "admin"
)

// AdminUser is the operators' NATS user name.
const AdminUser = "admin"

// GatewayUser is the NATS user name of site's gateway.
func GatewayUser(site string) string { return "gateway-" + site }

// GatewaySite is the site whose gateway user is named user (GatewayUser),
// and whether it is one.
func GatewaySite(user string) (string, bool) {
	site, ok := strings.CutPrefix(user, "gateway-")
	return site, ok && validSiteName(site)
}

// User is a NATS user every server of the cluster admits.
type User struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// PasswordHash is the bcrypt hash of the user's password: a site file
	// lets its server check every user without holding their passwords.
	PasswordHash string `json:"password_hash"`
}

// Site is a site file: what one site's process needs to join the cluster.
type Site struct {
	Site string `json:"site"`
	// CA, Cert and Key are PEM files, relative to the site file's
	// directory unless absolute. Without them the site's NATS links are
	// plain (only `salamander dev`, on loopback, runs that way).
	CA   string `json:"ca,omitempty"`
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// NATSUser and NATSPassword are this site's gateway credential.
	NATSUser     string `json:"nats_user"`
	NATSPassword string `json:"nats_password"`
	// RoutePassword authorizes routes between the sites' servers (on top
	// of their certificates); the same for every site.
	RoutePassword string `json:"route_password"`
	// Users are the NATS users every server admits.
	Users []User `json:"users"`
	// LogKey seals the session-signing keys in the log (SealKey), so that
	// a NATS credential that can read the log cannot forge sessions; the
	// same for every site and the admin file.
	LogKey string `json:"log_key"`

	dir string
}

// Admin is an admin file: the operators' credential for `salamander admin`.
type Admin struct {
	CA           string `json:"ca,omitempty"`
	NATSUser     string `json:"nats_user"`
	NATSPassword string `json:"nats_password"`
	// LogKey is the deployment's log key (Site.LogKey): rotating the
	// signing key seals the new one with it.
	LogKey string `json:"log_key"`

	dir string
}

// RouteUser is the user name routes authenticate with.
const RouteUser = "route"

// Options says what Generate creates.
type Options struct {
	// Sites are the site names, e.g. a, b, c.
	Sites []string
	// Hosts lists, per site, the DNS names and IP addresses its servers
	// are reached at; every certificate also names localhost and
	// 127.0.0.1.
	Hosts map[string][]string
	// TLS creates the CA and certificates; without it the files hold
	// credentials only (plain links, for a loopback dev cluster).
	TLS bool
	// Valid is how long certificates are valid (default two years).
	Valid time.Duration
	// BcryptCost for the users' password hashes (default bcrypt's).
	BcryptCost int
}

// SiteFile and AdminFile are where Generate puts a site's file and the
// admin file in its directory.
func SiteFile(dir, site string) string { return filepath.Join(dir, "site-"+site, "site.json") }
func AdminFile(dir string) string      { return filepath.Join(dir, "admin.json") }

// Generate writes a deployment's secrets into dir, which must not hold
// them already (it never overwrites: rotating is a new directory, see the
// README). It creates dir with mode 0700.
func Generate(dir string, o Options) error {
	if len(o.Sites) == 0 {
		return errors.New("secrets: no sites")
	}
	for i, s := range o.Sites {
		if !validSiteName(s) {
			return fmt.Errorf("secrets: site name %q: use 1-16 lowercase letters, digits or -", s)
		}
		if slices.Contains(o.Sites[:i], s) {
			return fmt.Errorf("secrets: site %s named twice", s)
		}
	}
	if o.Valid == 0 {
		o.Valid = 2 * 365 * 24 * time.Hour
	}
	if o.BcryptCost == 0 {
		o.BcryptCost = bcrypt.DefaultCost
	}
	if _, err := os.Stat(AdminFile(dir)); err == nil {
		return fmt.Errorf("secrets: %s already holds a deployment's secrets; use a new directory", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	var ca *authority
	if o.TLS {
		var err error
		if ca, err = newAuthority(o.Valid); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "ca.pem"), ca.certPEM); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "ca-key.pem"), ca.keyPEM); err != nil {
			return err
		}
	}
	passwords := map[string]string{}
	var users []User
	add := func(name, role string) error {
		pw := randomSecret()
		hash, err := bcrypt.GenerateFromPassword([]byte(pw), o.BcryptCost)
		if err != nil {
			return fmt.Errorf("secrets: hash: %w", err)
		}
		passwords[name] = pw
		users = append(users, User{Name: name, Role: role, PasswordHash: string(hash)})
		return nil
	}
	for _, s := range o.Sites {
		if err := add(GatewayUser(s), RoleGateway); err != nil {
			return err
		}
	}
	if err := add(AdminUser, RoleAdmin); err != nil {
		return err
	}
	route, logKey := randomSecret(), randomSecret()
	for _, s := range o.Sites {
		sd := filepath.Dir(SiteFile(dir, s))
		if err := os.MkdirAll(sd, 0o700); err != nil {
			return fmt.Errorf("secrets: %w", err)
		}
		f := Site{Site: s, NATSUser: GatewayUser(s), NATSPassword: passwords[GatewayUser(s)], RoutePassword: route, Users: users,
			LogKey: logKey}
		if ca != nil {
			certPEM, keyPEM, err := ca.issue("salamander site "+s, o.Hosts[s], o.Valid)
			if err != nil {
				return err
			}
			if err := writeFile(filepath.Join(sd, "cert.pem"), certPEM); err != nil {
				return err
			}
			if err := writeFile(filepath.Join(sd, "key.pem"), keyPEM); err != nil {
				return err
			}
			if err := writeFile(filepath.Join(sd, "ca.pem"), ca.certPEM); err != nil {
				return err
			}
			f.CA, f.Cert, f.Key = "ca.pem", "cert.pem", "key.pem"
		}
		if err := writeJSON(SiteFile(dir, s), f); err != nil {
			return err
		}
	}
	a := Admin{NATSUser: AdminUser, NATSPassword: passwords[AdminUser], LogKey: logKey}
	if ca != nil {
		a.CA = "ca.pem"
	}
	return writeJSON(AdminFile(dir), a)
}

// LoadSite reads a site file.
func LoadSite(path string) (*Site, error) {
	var s Site
	if err := readJSON(path, &s); err != nil {
		return nil, err
	}
	s.dir = filepath.Dir(path)
	switch {
	case s.Site == "" || s.NATSUser == "" || s.NATSPassword == "" || s.RoutePassword == "":
		return nil, fmt.Errorf("secrets: %s: site, nats_user, nats_password and route_password are required", path)
	case len(s.Users) == 0:
		return nil, fmt.Errorf("secrets: %s: no users", path)
	case !validLogKey(s.LogKey):
		return nil, fmt.Errorf("secrets: %s: log_key must be 32 bytes, base64url (files from `salamander certs` have one)", path)
	case (s.CA == "") != (s.Cert == "") || (s.Cert == "") != (s.Key == ""):
		return nil, fmt.Errorf("secrets: %s: ca, cert and key go together", path)
	}
	for _, u := range s.Users {
		if u.Role != RoleGateway && u.Role != RoleAdmin {
			return nil, fmt.Errorf("secrets: %s: user %s has unknown role %q", path, u.Name, u.Role)
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return nil, fmt.Errorf("secrets: %s: user %s: password_hash is not a bcrypt hash", path, u.Name)
		}
	}
	return &s, nil
}

// LoadAdmin reads an admin file.
func LoadAdmin(path string) (*Admin, error) {
	var a Admin
	if err := readJSON(path, &a); err != nil {
		return nil, err
	}
	a.dir = filepath.Dir(path)
	if a.NATSUser == "" || a.NATSPassword == "" {
		return nil, fmt.Errorf("secrets: %s: nats_user and nats_password are required", path)
	}
	if !validLogKey(a.LogKey) {
		return nil, fmt.Errorf("secrets: %s: log_key must be 32 bytes, base64url (files from `salamander certs` have one)", path)
	}
	return &a, nil
}

// TLS reports whether the site's links are encrypted.
func (s *Site) TLS() bool { return s.Cert != "" }

// RouteTLS is the TLS configuration of the site server's routes, both
// ways: it presents the site's certificate and requires (and verifies)
// one issued by the deployment's CA from every peer.
func (s *Site) RouteTLS() (*tls.Config, error) {
	cfg, err := s.serverTLS()
	if err != nil || cfg == nil {
		return cfg, err
	}
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// ClientPortTLS is the TLS configuration of the site server's client port
// (nil for plain): clients prove themselves with their user and password.
func (s *Site) ClientPortTLS() (*tls.Config, error) { return s.serverTLS() }

func (s *Site) serverTLS() (*tls.Config, error) {
	if !s.TLS() {
		return nil, nil
	}
	pool, err := loadPool(s.path(s.CA))
	if err != nil {
		return nil, err
	}
	// Its key is held like the site file: readable by its owner only.
	if fi, err := os.Stat(s.path(s.Key)); err == nil {
		if err := ownerOnly(s.path(s.Key), fi.Mode()); err != nil {
			return nil, err
		}
	}
	cert, err := tls.LoadX509KeyPair(s.path(s.Cert), s.path(s.Key))
	if err != nil {
		return nil, fmt.Errorf("secrets: site %s certificate: %w", s.Site, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// CertificateExpiry is when the first of the site's certificate (its
// chain) and the deployment's CA expires (zero for plain): every link of
// the site fails from then on.
func (s *Site) CertificateExpiry() (time.Time, error) {
	if !s.TLS() {
		return time.Time{}, nil
	}
	var first time.Time
	for _, p := range []string{s.path(s.Cert), s.path(s.CA)} {
		b, err := os.ReadFile(p)
		if err != nil {
			return time.Time{}, fmt.Errorf("secrets: %w", err)
		}
		for {
			var block *pem.Block
			if block, b = pem.Decode(b); block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return time.Time{}, fmt.Errorf("secrets: %s: %w", p, err)
			}
			if first.IsZero() || c.NotAfter.Before(first) {
				first = c.NotAfter
			}
		}
	}
	return first, nil
}

// ClientTLS is what the site's gateway trusts when it connects to NATS
// (nil for plain).
func (s *Site) ClientTLS() (*tls.Config, error) {
	if !s.TLS() {
		return nil, nil
	}
	return clientTLS(s.path(s.CA))
}

// ClientTLS is what the admin command trusts when it connects to NATS
// (nil for plain).
func (a *Admin) ClientTLS() (*tls.Config, error) {
	if a.CA == "" {
		return nil, nil
	}
	return clientTLS(a.path(a.CA))
}

func clientTLS(caPath string) (*tls.Config, error) {
	pool, err := loadPool(caPath)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func (s *Site) path(p string) string  { return resolve(s.dir, p) }
func (a *Admin) path(p string) string { return resolve(a.dir, p) }

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("secrets: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// authority is the deployment's certificate authority.
type authority struct {
	cert            *x509.Certificate
	key             *ecdsa.PrivateKey
	certPEM, keyPEM []byte
}

func newAuthority(valid time.Duration) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("secrets: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "salamander deployment CA", Organization: []string{"salamander"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(valid),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("secrets: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}, nil
}

// issue creates a certificate for a site's server, good both as a server
// (routes and clients connect to it) and as a client (it routes to the
// others), naming hosts plus localhost and 127.0.0.1.
func (ca *authority) issue(name string, hosts []string, valid time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("secrets: key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"salamander"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(valid),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range append(slices.Clone(hosts), "localhost", "127.0.0.1") {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("secrets: certificate for %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// randomSecret is 32 random bytes, base64url: a password no one types.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func validSiteName(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("secrets: write %s: %w", path, err)
	}
	return f.Close()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

// maxFile bounds what a secrets file may hold.
const maxFile = 1 << 20

// ownerOnly refuses a secret file (at path, of mode) that others than its
// owner may read.
func ownerOnly(path string, mode os.FileMode) error {
	if mode.Perm()&0o077 != 0 {
		return fmt.Errorf("secrets: %s is readable by others (mode %04o); chmod 600 it", path, mode.Perm())
	}
	return nil
}

func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	if st.Size() > maxFile {
		return fmt.Errorf("secrets: %s is over %d bytes", path, maxFile)
	}
	if err := ownerOnly(path, st.Mode()); err != nil {
		return err
	}
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("secrets: %s: %w", path, err)
	}
	return nil
}

func validLogKey(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

func decodeLogKey(s string) []byte {
	b, _ := base64.RawURLEncoding.DecodeString(s)
	return b
}

// SealKey seals a session-signing key (with id) for the log with the
// deployment's log key: AES-256-GCM, a random nonce before the sealed
// bytes, the key id bound as additional data so that a sealed key cannot
// be replayed under another id.
func (s *Site) SealKey(id string, key []byte) ([]byte, error) {
	return sealKey(decodeLogKey(s.LogKey), id, key)
}

// OpenKey opens what SealKey sealed.
func (s *Site) OpenKey(id string, sealed []byte) ([]byte, error) {
	return openKey(decodeLogKey(s.LogKey), id, sealed)
}

// SealKey seals a session-signing key with the deployment's log key (see
// Site.SealKey).
func (a *Admin) SealKey(id string, key []byte) ([]byte, error) {
	return sealKey(decodeLogKey(a.LogKey), id, key)
}

func keyAEAD(logKey []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(logKey)
	if err != nil {
		return nil, fmt.Errorf("secrets: log key: %w", err)
	}
	return cipher.NewGCM(block)
}

func sealKey(logKey []byte, id string, key []byte) ([]byte, error) {
	aead, err := keyAEAD(logKey)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, key, []byte("salamander signing key "+id)), nil
}

func openKey(logKey []byte, id string, sealed []byte) ([]byte, error) {
	aead, err := keyAEAD(logKey)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("secrets: sealed key too short")
	}
	key, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte("salamander signing key "+id))
	if err != nil {
		return nil, fmt.Errorf("secrets: signing key %q does not open with this deployment's log key", id)
	}
	return key, nil
}
