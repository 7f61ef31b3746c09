package producer

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The reasons of an *AccessError: Redis refused a write because of how the
// client connects, not because of the event, so every write on that client
// fails alike until its settings are fixed.
var (
	// ErrAuth is a user name or password Redis did not accept (WRONGPASS:
	// a wrong password, an unknown or disabled user), or no password where
	// one is required (NOAUTH).
	ErrAuth = errors.New("authentication failed")
	// ErrNoPermission is an ACL user that may not run a command the
	// producer needs (XADD, ZADD, SELECT) or touch the stream's keys
	// (NOPERM).
	ErrNoPermission = errors.New("permission denied for the user")
	// ErrDatabase is a database number the server does not have (ERR DB
	// index is out of range).
	ErrDatabase = errors.New("database index out of range")
)

// AccessError is a write Redis refused because of the client's connection
// settings: its Reason is ErrAuth, ErrNoPermission or ErrDatabase, its Err
// Redis's own error. errors.Is matches both.
type AccessError struct {
	// Reason is ErrAuth, ErrNoPermission or ErrDatabase.
	Reason error
	// Settings names where the client's settings come from, for the
	// advice in the message: Options.Settings.
	Settings string
	// Err is the error Redis replied.
	Err error
}

func (e *AccessError) Error() string {
	setting := e.Settings
	if setting == "" { // an AccessError not made by a Producer
		setting = "the Redis URL"
	}
	var advice string
	switch e.Reason {
	case ErrAuth:
		advice = "check the user name and password in " + setting + ", and that the user is enabled"
	case ErrNoPermission:
		advice = "check the user in " + setting + " and its ACL rules: the producer needs XADD and ZADD on the stream's keys, and SELECT for a database other than 0"
	case ErrDatabase:
		advice = "check the database number at the end of " + setting + ": the server has fewer databases (its databases setting, 16 by default: 0 to 15)"
	}
	return fmt.Sprintf("%v: %s (Redis: %v)", e.Reason, advice, e.Err)
}

// Unwrap returns the reason and Redis's error.
func (e *AccessError) Unwrap() []error { return []error{e.Reason, e.Err} }

// classify returns err as an *AccessError when Redis refused a write for
// the connection's sake, and err itself otherwise.
func (p *Producer) classify(err error) error {
	if err == nil {
		return nil // before aerr, whose address escapes: an allocation per result
	}
	var reason error
	var aerr *AccessError
	switch {
	case errors.As(err, &aerr):
		return err
	case redis.HasErrorPrefix(err, "WRONGPASS"), redis.HasErrorPrefix(err, "NOAUTH"),
		redis.HasErrorPrefix(err, "invalid password"): // Redis before 6, "ERR invalid password"
		reason = ErrAuth
	case redis.HasErrorPrefix(err, "NOPERM"):
		reason = ErrNoPermission
	case redis.HasErrorPrefix(err, "DB index is out of range"): // "ERR DB index …": HasErrorPrefix drops "ERR "
		reason = ErrDatabase
	default:
		return err
	}
	return &AccessError{Reason: reason, Settings: p.opts.Settings, Err: err}
}

// failUnread gives every command of an executed pipeline the pipeline's
// error when the pipeline failed and no command has an error of its own.
// go-redis leaves them so when the connection's handshake (AUTH, HELLO,
// SELECT) fails: nothing was sent, and a command without an error would
// count as written.
func failUnread(cmds []redis.Cmder, err error) {
	if err == nil {
		return
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return // the replies were read: each command has its own outcome
		}
	}
	for _, c := range cmds {
		c.SetErr(err)
	}
}
