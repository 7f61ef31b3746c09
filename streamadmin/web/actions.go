package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/streamworker/streamworker/streamadmin"
	"github.com/streamworker/streamworker/wire"
)

// maxForm bounds the body of a POST.
const maxForm = 1 << 20

// actionForm is a replay or purge the operator asked for.
type actionForm struct {
	Stream string
	Action string // replay or purge
	Scope  string // selected: the IDs; matching: every match of Filter up to Upto
	IDs    []string
	Filter filter
	Upto   string
	CSRF   string
}

// confirmView is the page that shows what an action will do, and asks.
type confirmView struct {
	actionForm
	DLQ   string
	Count int
}

// resultView is what an action did.
type resultView struct {
	Stream, DLQ, Action string
	Asked, Done         int
	NotFound, NoType    []string
	Err                 string
}

// handleAction replays or purges dead letters: the selected IDs, or every
// match of a search. The first POST shows how many entries it will touch
// and asks to confirm; the second (confirm=yes) does it, with streamadmin's
// Replay and Purge: the operations and guarantees of `streamctl dlq`.
// Every match means those there when the count was shown (Upto): entries
// dead-lettered after it stay.
func (s *Server) handleAction(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("reading the form: %w", err))
		return
	}
	who, err := s.authorize(r)
	if err != nil {
		s.fail(w, r, http.StatusForbidden, err)
		return
	}
	f, err := s.parseAction(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	ctx := r.Context()
	ids := f.IDs
	if f.Scope == "matching" {
		if f.Upto == "" {
			if f.Upto, err = s.lastDeadLetter(r); err != nil {
				s.fail(w, r, http.StatusInternalServerError, err)
				return
			}
		}
		if f.Upto != "" {
			var more bool
			if ids, more, err = s.matches(ctx, f.Stream, f.Filter, f.Upto); err != nil {
				s.fail(w, r, http.StatusInternalServerError, err)
				return
			}
			if more {
				s.fail(w, r, http.StatusBadRequest, fmt.Errorf("more than %d dead letters match: narrow the search, or use streamctl dlq", maxMatches))
				return
			}
		}
	}
	if r.PostFormValue("confirm") != "yes" {
		f.CSRF = s.viewerOf(r).CSRF
		s.render(w, r, http.StatusOK, "confirm", "Confirm "+f.Action, confirmView{actionForm: f, DLQ: wire.DeadLetterKey(f.Stream), Count: len(ids)})
		return
	}
	res := resultView{Stream: f.Stream, DLQ: wire.DeadLetterKey(f.Stream), Action: f.Action, Asked: len(ids)}
	if len(ids) > 0 {
		switch f.Action {
		case "replay":
			out, err := s.admin.Replay(ctx, f.Stream, ids)
			for _, o := range out {
				switch o.Outcome {
				case streamadmin.Replayed:
					res.Done++
				case streamadmin.NotFound:
					res.NotFound = append(res.NotFound, o.ID)
				case streamadmin.NoType:
					res.NoType = append(res.NoType, o.ID)
				}
			}
			if err != nil {
				res.Err = err.Error()
			}
		case "purge":
			n, missing, err := s.admin.Purge(ctx, f.Stream, ids)
			res.Done, res.NotFound = int(n), missing
			if err != nil {
				res.Err = err.Error()
			}
		}
	}
	// One line per change: who, what, how many. Stream names and IDs, no
	// field of any entry.
	s.log.Info("dashboard change", "who", who, "action", f.Action, "stream", f.Stream, "scope", f.Scope,
		"asked", res.Asked, "done", res.Done, "not_found", len(res.NotFound), "no_type", len(res.NoType), "error", res.Err)
	status := http.StatusOK
	if res.Err != "" {
		status = http.StatusInternalServerError
	}
	s.render(w, r, status, "result", strings.ToUpper(f.Action[:1])+f.Action[1:]+" done", res)
}

func (s *Server) parseAction(r *http.Request) (actionForm, error) {
	f := actionForm{Stream: r.PostFormValue("s"), Action: r.PostFormValue("action"), Scope: r.PostFormValue("scope"), Upto: r.PostFormValue("upto")}
	if do := r.PostFormValue("do"); do != "" { // the buttons of the list: replay-selected, ...
		f.Action, f.Scope, _ = strings.Cut(do, "-")
	}
	if f.Stream == "" {
		return f, errors.New("s: name the stream whose dead letters to change")
	}
	if f.Action != "replay" && f.Action != "purge" {
		return f, fmt.Errorf("action: %q is not allowed (replay or purge)", clip(40, f.Action))
	}
	switch f.Scope {
	case "selected":
		f.IDs = r.PostForm["id"]
		if len(f.IDs) == 0 {
			return f, errors.New("select the dead letters first")
		}
		if len(f.IDs) > maxMatches {
			return f, fmt.Errorf("id: %d selected; at most %d", len(f.IDs), maxMatches)
		}
		for _, id := range f.IDs {
			if err := streamadmin.CheckID(id); err != nil {
				return f, fmt.Errorf("id: %w", err)
			}
		}
	case "matching":
		var err error
		if f.Filter, err = parseFilter(r.PostForm); err != nil {
			return f, err
		}
		if f.Upto != "" {
			if err := streamadmin.CheckID(f.Upto); err != nil {
				return f, fmt.Errorf("upto: %w", err)
			}
		}
	default:
		return f, fmt.Errorf("scope: %q is not allowed (selected or matching)", clip(40, f.Scope))
	}
	return f, nil
}

// lastDeadLetter is the newest entry ID of the request's dead-letter
// stream; "" when it is empty.
func (s *Server) lastDeadLetter(r *http.Request) (string, error) {
	key := wire.DeadLetterKey(r.PostFormValue("s"))
	msgs, err := s.client.XRevRangeN(r.Context(), key, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", key, err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	return msgs[0].ID, nil
}

type loginView struct {
	Failed bool
}

func (s *Server) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", "Log in", loginView{})
}

// handleLogin checks a token typed into the form and starts a session: an
// HttpOnly, SameSite=Strict cookie.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("reading the form: %w", err))
		return
	}
	if len(s.tokens) == 0 {
		s.fail(w, r, http.StatusForbidden, errForbidden{"the dashboard is read-only: start it with " + TokenEnv + " set to make changes"})
		return
	}
	if !originOK(r) {
		s.fail(w, r, http.StatusForbidden, errForbidden{"cross-origin request refused"})
		return
	}
	who, ok := match(s.tokens, r.PostFormValue("token"))
	if !ok {
		s.log.Warn("login refused", "remote", r.RemoteAddr, "reason", "wrong token")
		s.render(w, r, http.StatusForbidden, "login", "Log in", loginView{Failed: true})
		return
	}
	id, ss := s.sessions.create(who)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", Expires: ss.expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureCookie(r),
	})
	s.log.Info("logged in", "who", who, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("reading the form: %w", err))
		return
	}
	if _, err := s.authorize(r); err != nil {
		s.fail(w, r, http.StatusForbidden, err)
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.delete(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// maxGroup bounds the group name a pause form may send.
const maxGroup = 256

// handlePause pauses or resumes a stream, for every group or one, with
// streamadmin's Pause and Resume: what `streamctl pause` and `streamctl
// resume` do. The change is one click (a pause is undone by a resume, and
// nothing is lost either way), then the stream page again.
func (s *Server) handlePause(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("reading the form: %w", err))
		return
	}
	who, err := s.authorize(r)
	if err != nil {
		s.fail(w, r, http.StatusForbidden, err)
		return
	}
	stream, action, group := r.PostFormValue("s"), r.PostFormValue("action"), r.PostFormValue("group")
	switch {
	case stream == "":
		s.fail(w, r, http.StatusBadRequest, errors.New("s: name the stream to pause or resume"))
		return
	case action != "pause" && action != "resume":
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("action: %q is not allowed (pause or resume)", clip(40, action)))
		return
	case len(group) > maxGroup:
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("group: %d bytes; at most %d", len(group), maxGroup))
		return
	}
	if logical, _, ok := partitionOf(stream); ok {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("s: %q is a partition; the workers pause every partition of %q together: pause that", clip(80, stream), clip(80, logical)))
		return
	}
	ctx := r.Context()
	var changed bool
	switch action {
	case "pause":
		var already bool
		already, err = s.admin.Pause(ctx, stream, group)
		changed = err == nil && !already
	case "resume":
		_, changed, err = s.admin.Resume(ctx, stream, group)
	}
	scope := group
	if scope == "" {
		scope = "all"
	}
	// One line per change: who, what, which stream and group.
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.log.Info("dashboard change", "who", who, "action", action, "stream", stream, "group", scope, "changed", changed, "error", msg)
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	http.Redirect(w, r, "/stream?s="+url.QueryEscape(stream), http.StatusSeeOther)
}
