package admin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// A console session is a signed cookie, not server state: a person logged in through one server is logged
// in on all of them (they share the session key), and a server restart logs nobody out. It carries the
// hash of the token the person logged in with, never the token; every request looks that hash up in the
// tokens file again, so deleting a token's line ends its sessions within a second, and a changed role
// takes effect at once.
//
// Forms and htmx requests carry a CSRF token derived from the session's nonce; writes without it are
// refused, on top of the cookie being SameSite=Strict and the Origin header being checked.

const (
	sessionCookie = "clover_session"
	// sessionTTL is how long a login lasts without another.
	sessionTTL = 12 * time.Hour
	csrfField  = "csrf"
	csrfHeader = "X-Clover-CSRF"
)

// session is what the cookie says, once its signature and age are checked.
type session struct {
	Name    string `json:"n"`
	Role    string `json:"r"`
	Hash    string `json:"h"` // sha256 of the token, hex; "" in insecure mode
	Expires int64  `json:"e"` // unix seconds
	Nonce   string `json:"c"`
}

var (
	errNoSession  = errors.New("not logged in")
	errBadSession = errors.New("session cookie is not valid (signed by another cluster, altered or expired)")
)

// sessions signs and checks session cookies with key.
type sessions struct {
	key    []byte
	secure bool // cookies only over HTTPS
	now    func() time.Time
}

func (s sessions) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("clover console session\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// issue sets the session cookie for a login.
func (s sessions) issue(w http.ResponseWriter, name, role, hash string) (session, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return session{}, fmt.Errorf("admin: session nonce: %w", err)
	}
	se := session{Name: name, Role: role, Hash: hash, Expires: s.now().Add(sessionTTL).Unix(), Nonce: base64.RawURLEncoding.EncodeToString(nonce)}
	body, err := json.Marshal(se)
	if err != nil {
		return session{}, fmt.Errorf("admin: encode session: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	value := payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/ui/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteStrictMode,
	})
	return se, nil
}

// read returns the request's session, checked.
func (s sessions) read(r *http.Request) (session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return session{}, errNoSession
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return session{}, errBadSession
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(payload)) {
		return session{}, errBadSession
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return session{}, errBadSession
	}
	var se session
	if err := json.Unmarshal(body, &se); err != nil || se.Nonce == "" {
		return session{}, errBadSession
	}
	if s.now().Unix() >= se.Expires {
		return session{}, errBadSession
	}
	return se, nil
}

// clear ends the session in the browser.
func (s sessions) clear(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteStrictMode})
}

// csrf is the token a session's forms carry.
func (s sessions) csrf(se session) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("clover console csrf\x00"))
	m.Write([]byte(se.Nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF reports whether a write carries its session's CSRF token (form field or header).
func (s sessions) checkCSRF(r *http.Request, se session) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && hmac.Equal([]byte(got), []byte(s.csrf(se)))
}
