package main

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/go-json-experiment/json/jsontext"
)

// lineDecoder decodes input lines into fileLines, keeping its buffers from
// one line to the next. It is not safe for concurrent use.
//
// The common line takes a fast path: one pass of a jsontext.Decoder (the
// tokenizer of encoding/json/v2), which checks the JSON as it goes and
// hands out strings and the data as slices of the line, without reflection
// and, for a type seen before, without an allocation. jsontext is stricter
// than encoding/json (it refuses invalid UTF-8 and lone surrogates), and
// the fast path takes only what it is sure of: an object whose keys are
// spelled exactly, string fields that are strings, data that is not null.
// Anything else goes to decodeLineStrict, which decides as before;
// FuzzDecodeLine holds the two to the same answers. Duplicate names are
// let through (fastOptions): encoding/json takes them too, the last one
// winning, as in the fast path's loop; checking for them took about a
// quarter of the time to decode a line whose data is an object of five
// names.
type lineDecoder struct {
	in  bytes.Buffer // the line, for dec to read without a copy
	dec jsontext.Decoder
	// types are the event types seen so far, so that each line of a type
	// does not allocate its own string. Kept small: types are few, and a
	// file of many gets no worse than an allocation a line.
	types map[string]*string
	text  []byte // scratch for an unquoted string with escapes
}

// maxTypes bounds lineDecoder.types.
const maxTypes = 256

// fastOptions are the fast path's jsontext options: duplicate names
// allowed, as encoding/json allows them.
var fastOptions = []jsontext.Options{jsontext.AllowDuplicateNames(true)}

// decode decodes a line strictly: one JSON object (or null) with no fields
// but type, data, id, key, delay and unique_for. The data it returns may
// point into the decoder's buffer: it is valid until the next call.
func (d *lineDecoder) decode(line []byte) (fileLine, error) {
	if l, ok := d.fast(line); ok {
		return l, nil
	}
	return decodeLine(line)
}

// fast decodes the common line, or says it is not one.
func (d *lineDecoder) fast(line []byte) (l fileLine, ok bool) {
	d.in.Reset()
	d.in.Write(line)
	d.dec.Reset(&d.in, fastOptions...)
	if tok, err := d.dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return l, false
	}
	for d.dec.PeekKind() == '"' {
		name, err := d.dec.ReadValue()
		if err != nil {
			return l, false
		}
		v, err := d.dec.ReadValue()
		if err != nil {
			return l, false
		}
		var field **string
		switch string(name) {
		case `"data"`:
			if v.Kind() == 'n' {
				return l, false // encoding/json's "null", kept off the fast path
			}
			l.Data = json.RawMessage(v)
			continue
		case `"type"`:
			if v.Kind() != '"' {
				return l, false
			}
			if l.Type, ok = d.typeName(v); !ok {
				return l, false
			}
			continue
		case `"id"`:
			field = &l.ID
		case `"key"`:
			field = &l.Key
		case `"delay"`:
			field = &l.Delay
		case `"unique_for"`:
			field = &l.UniqueFor
		default:
			return l, false
		}
		switch v.Kind() {
		case 'n':
			*field = nil
		case '"':
			b, ok := d.unquote(v)
			if !ok {
				return l, false
			}
			s := string(b)
			*field = &s
		default:
			return l, false
		}
	}
	if tok, err := d.dec.ReadToken(); err != nil || tok.Kind() != '}' {
		return l, false
	}
	// Nothing but white space may follow the object.
	_, err := d.dec.ReadToken()
	return l, err == io.EOF //nolint:errorlint // jsontext returns io.EOF itself at the end
}

// unquote returns the text of v, a JSON string jsontext has checked: a
// slice of v when it has no escapes, else a copy in d.text.
func (d *lineDecoder) unquote(v jsontext.Value) ([]byte, bool) {
	raw := v[1 : len(v)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw, true
	}
	var err error
	d.text, err = jsontext.AppendUnquote(d.text[:0], v)
	return d.text, err == nil
}

// typeName returns the type v names, the same string as the last line of
// that type when there was one. Nothing changes a fileLine's strings, so
// lines may share them.
func (d *lineDecoder) typeName(v jsontext.Value) (*string, bool) {
	b, ok := d.unquote(v)
	if !ok {
		return nil, false
	}
	if s, ok := d.types[string(b)]; ok {
		return s, true
	}
	s := string(b)
	if d.types == nil {
		d.types = make(map[string]*string)
	}
	if len(d.types) < maxTypes {
		d.types[s] = &s
	}
	return &s, true
}
