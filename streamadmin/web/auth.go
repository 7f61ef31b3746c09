package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// TokenEnv is the environment variable that turns the dashboard's changes
// on: without it the dashboard is read-only.
const TokenEnv = "STREAMCTL_WEB_TOKEN"

// minSecret is the shortest secret ParseTokens accepts, in bytes.
const minSecret = 16

// Token is one operator credential: a name, logged with every change made
// with it, and the secret that proves it.
type Token struct {
	Name   string
	Secret string
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$`)

// ParseTokens reads STREAMCTL_WEB_TOKEN: a comma-separated list of
// name:secret, or a bare secret, whose name is then "token". Names are
// letters, digits and _.@- (up to 64), unique; secrets have at least 16
// bytes and no comma. An empty value is no token: the dashboard is
// read-only.
func ParseTokens(value string) ([]Token, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	var out []Token
	seen := map[string]bool{}
	for i, item := range strings.Split(value, ",") {
		name, secret, named := strings.Cut(strings.TrimSpace(item), ":")
		if !named {
			name, secret = "token", name
		}
		switch {
		case !tokenName.MatchString(name):
			return nil, fmt.Errorf("%s: token %d: name %q is not allowed (letters, digits and _.@-, up to 64, as name:secret)", TokenEnv, i+1, name)
		case len(secret) < minSecret:
			return nil, fmt.Errorf("%s: token %d (%s): the secret has %d bytes; at least %d are needed (e.g. openssl rand -hex 32)", TokenEnv, i+1, name, len(secret), minSecret)
		case seen[name]:
			return nil, fmt.Errorf("%s: token name %q is given twice; each token needs a name of its own", TokenEnv, name)
		}
		seen[name] = true
		out = append(out, Token{Name: name, Secret: secret})
	}
	return out, nil
}

// match returns the name of the token whose secret is secret. It compares
// SHA-256 digests in constant time and looks at every token, so neither the
// length of a secret nor which token matched shows in the time it takes.
func match(tokens []Token, secret string) (string, bool) {
	got := sha256.Sum256([]byte(secret))
	var name string
	var found int
	for _, t := range tokens {
		want := sha256.Sum256([]byte(t.Secret))
		eq := subtle.ConstantTimeCompare(got[:], want[:])
		if eq == 1 {
			name = t.Name
		}
		found |= eq
	}
	return name, found == 1
}

// sessionCookie carries the session ID after a login.
const sessionCookie = "streamctl_session"

// session is one login.
type session struct {
	who     string
	csrf    string
	expires time.Time
}

// sessions are the logins of one Server, in memory: a restart logs every
// operator out.
type sessions struct {
	mu   sync.Mutex
	byID map[string]session
	ttl  time.Duration
	max  int
	now  func() time.Time
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{byID: map[string]session{}, ttl: ttl, max: max, now: now}
}

// create starts a session for who and returns its ID.
func (s *sessions) create(who string) (string, session) {
	id, csrf := randomToken(), randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.byID {
		if now.After(v.expires) {
			delete(s.byID, k)
		}
	}
	if len(s.byID) >= s.max { // drop the one closest to expiring
		var oldest string
		for k, v := range s.byID {
			if oldest == "" || v.expires.Before(s.byID[oldest].expires) {
				oldest = k
			}
		}
		delete(s.byID, oldest)
	}
	ss := session{who: who, csrf: csrf, expires: now.Add(s.ttl)}
	s.byID[id] = ss
	return id, ss
}

func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byID[id]
	if !ok || s.now().After(ss.expires) {
		delete(s.byID, id)
		return session{}, false
	}
	return ss, true
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// errForbidden is why a change is refused; its text is shown to the user.
type errForbidden struct{ reason string }

func (e errForbidden) Error() string { return e.reason }

// viewer is who looks at a page: an operator logged in (who, csrf), or
// anyone (both empty).
type viewer struct {
	Who  string
	CSRF string
}

// viewerOf returns the session of r, if it has one.
func (s *Server) viewerOf(r *http.Request) viewer {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return viewer{}
	}
	ss, ok := s.sessions.get(c.Value)
	if !ok {
		return viewer{}
	}
	return viewer{Who: ss.who, CSRF: ss.csrf}
}

// authorize returns who makes the change r asks for: the token of an
// Authorization: Bearer header, or the session of the cookie together with
// the CSRF token of the form (a browser sends the cookie on its own, so the
// cookie alone proves nothing; a bearer header no other site can make a
// browser send). A request from another origin is refused either way.
func (s *Server) authorize(r *http.Request) (string, error) {
	if len(s.tokens) == 0 {
		return "", errForbidden{"the dashboard is read-only: start it with " + TokenEnv + " set to make changes"}
	}
	if !originOK(r) {
		return "", errForbidden{"cross-origin request refused"}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return "", errForbidden{"Authorization: want Bearer <token>"}
		}
		if name, ok := match(s.tokens, secret); ok {
			return name, nil
		}
		return "", errForbidden{"invalid token"}
	}
	v := s.viewerOf(r)
	if v.Who == "" {
		return "", errForbidden{"log in first: changes need a token"}
	}
	form := r.PostFormValue("csrf")
	if subtle.ConstantTimeCompare([]byte(form), []byte(v.CSRF)) != 1 || form == "" {
		return "", errForbidden{"missing or wrong CSRF token: reload the page and try again"}
	}
	return v.Who, nil
}

// originOK reports whether r has no Origin header (curl, scripts) or one
// naming the host r was sent to. "null" (a sandboxed frame, a redirect
// across origins) is not.
func originOK(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	_, host, ok := strings.Cut(origin, "://")
	return ok && host == r.Host
}

// secureCookie reports whether the session cookie may be marked Secure: the
// request came over TLS, here or at a proxy in front.
func secureCookie(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}
