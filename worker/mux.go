package worker

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Mux routes a message to the handler registered for its type. Register every
// handler before the runtime starts; the routes are fixed from then on, so a
// lookup takes no lock.
type Mux struct {
	mu      sync.Mutex
	routes  map[string]Handler
	mws     []Middleware
	frozen  bool
	chained map[string]Handler // routes wrapped in mws, built once by freeze
	ready   atomic.Bool        // chained is built and read without the lock
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{routes: make(map[string]Handler)} }

// Handle registers h for messages whose type field is typ. It panics on an
// empty type, one that is not UTF-8 (it names a metrics series), a nil
// handler, a type registered twice or a Mux already in use, as http.ServeMux
// does: each is a programming error.
func (x *Mux) Handle(typ string, h Handler) {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case x.frozen:
		panic("worker: Mux.Handle(" + typ + ") after the runtime started")
	case typ == "":
		panic("worker: Mux.Handle with an empty type")
	case !utf8.ValidString(typ):
		panic(fmt.Sprintf("worker: Mux.Handle(%q) with a type that is not UTF-8", typ))
	case h == nil:
		panic("worker: Mux.Handle(" + typ + ") with a nil handler")
	}
	if _, dup := x.routes[typ]; dup {
		panic("worker: Mux.Handle(" + typ + ") registered twice")
	}
	x.routes[typ] = h
}

// HandleFunc registers f for messages whose type field is typ.
func (x *Mux) HandleFunc(typ string, f func(ctx context.Context, m *Message) error) {
	x.Handle(typ, HandlerFunc(f))
}

// Use appends middleware that wraps every handler of this Mux, the first one
// outermost.
func (x *Mux) Use(mws ...Middleware) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.frozen {
		panic("worker: Mux.Use after the runtime started")
	}
	x.mws = append(x.mws, mws...)
}

// Types returns the registered types, sorted.
func (x *Mux) Types() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	types := make([]string, 0, len(x.routes))
	for t := range x.routes {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// freeze fixes the routes and builds each middleware chain once.
func (x *Mux) freeze() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.frozen {
		return
	}
	x.frozen = true
	x.chained = make(map[string]Handler, len(x.routes))
	for t, h := range x.routes {
		for i := len(x.mws) - 1; i >= 0; i-- {
			h = x.mws[i](h)
		}
		x.chained[t] = h
	}
	x.ready.Store(true)
}

// HandleMessage routes m by its type. A missing type returns ErrNoType and an
// unknown one ErrNoHandler; both are permanent.
func (x *Mux) HandleMessage(ctx context.Context, m *Message) error {
	if !x.ready.Load() {
		x.freeze()
	}
	if m.Type == "" {
		return ErrNoType
	}
	h, ok := x.chained[m.Type]
	if !ok {
		return fmt.Errorf("%w %s", ErrNoHandler, quoteType(m.Type))
	}
	return h.HandleMessage(ctx, m)
}

// maxShownType is how many bytes of a type an error or log line shows: a
// type is whatever a producer sent, of any length.
const maxShownType = 128

// shownType is typ cut to maxShownType bytes, at a character boundary, and
// marked with its full length when cut.
func shownType(typ string) string {
	if len(typ) <= maxShownType {
		return typ
	}
	i := maxShownType
	for i > maxShownType-utf8.UTFMax && !utf8.RuneStart(typ[i]) {
		i--
	}
	return typ[:i] + "…(" + itoa(len(typ)) + " bytes)"
}

// quoteType is shownType quoted, with bytes that are not UTF-8 escaped.
func quoteType(typ string) string { return strconv.Quote(shownType(typ)) }
