package fsm

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
)

// Error is a rejected command, carrying the HTTP status and Kong's error
// body. Code 0 means a plain {"message": ...} body.
type Error struct {
	Status  int
	Code    int
	Name    string
	Message string
	Fields  any
}

func (e *Error) Error() string { return e.Message }

// Body is the JSON body Kong sends for this error.
func (e *Error) Body() map[string]any {
	if e.Code == 0 {
		return map[string]any{"message": e.Message}
	}
	b := map[string]any{"code": e.Code, "name": e.Name, "message": e.Message}
	if e.Fields != nil {
		b["fields"] = e.Fields
	}
	return b
}

// ErrNotFound is Kong's plain 404.
func ErrNotFound() *Error { return &Error{Status: 404, Message: "Not found"} }

// SchemaError wraps field errors as Kong's code 2 schema violation.
func SchemaError(errs schema.Errors) *Error {
	return &Error{Status: 400, Code: 2, Name: "schema violation", Message: errs.Message(), Fields: errs}
}

// uniqueError is Kong's 409 for a unique constraint.
func uniqueError(fields map[string]any) *Error {
	return &Error{Status: 409, Code: 5, Name: "unique constraint violation",
		Message: "UNIQUE violation detected on '" + luaTable(fields) + "'", Fields: fields}
}

// luaTable renders a value the way Kong prints it in messages:
// {name="x",service={id="..."}} with keys sorted.
func luaTable(v any) string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + luaTable(x[k])
		}
		return "{" + strings.Join(parts, ",") + "}"
	case string:
		return fmt.Sprintf("%q", x)
	case nil:
		return "null"
	case float64:
		return schemaNum(x)
	}
	return fmt.Sprint(v)
}

func schemaNum(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprint(f)
}

// LuaTable renders v as Kong prints a table in an error message.
func LuaTable(v any) string { return luaTable(v) }
