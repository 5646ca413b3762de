// argocd-lua-harness runs robofleet's Argo CD Lua scripts the way Argo CD does (util/lua in Argo
// CD): gopher-lua with only the package, base and table libraries plus a safe os (time, date), a
// one-second deadline, the live object as the global `obj` (converted as Argo CD converts an
// unstructured object), and the returned table encoded with gopher-json.
//
//	argocd-lua-harness health    SCRIPT OBJECT.json  -> {"status": ..., "message": ...}
//	argocd-lua-harness discovery SCRIPT OBJECT.json  -> [{"name", "disabled", "iconClass", "displayName"}] by name
//	argocd-lua-harness action    SCRIPT OBJECT.json  -> the object to patch (after Argo CD's empty-table cleanup)
//
// A Lua error, or a result Argo CD would refuse, exits 1 with the reason on stderr.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua-harness health|discovery|action SCRIPT OBJECT.json")
		os.Exit(2)
	}
	out, err := run(os.Args[1], os.Args[2], os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Stdout.Write(append(out, '\n'))
}

func run(mode, scriptPath, objectPath string) ([]byte, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(objectPath)
	if err != nil {
		return nil, err
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", objectPath, err)
	}
	l, err := runLua(obj, string(script))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	switch mode {
	case "health":
		return health(encoded)
	case "discovery":
		return discovery(encoded)
	case "action":
		return action(encoded, obj)
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

// decodeObject reads JSON as client-go's unstructured does: integers int64, other numbers float64.
func decodeObject(raw []byte) (map[string]interface{}, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v interface{}
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	m, ok := numbers(v).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	return m, nil
}

func numbers(v interface{}) interface{} {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []interface{}:
		for i := range t {
			t[i] = numbers(t[i])
		}
	case map[string]interface{}:
		for k := range t {
			t[k] = numbers(t[k])
		}
	}
	return v
}

// runLua mirrors Argo CD's VM.runLua with UseOpenLibs false (the default for scripts in argocd-cm).
func runLua(obj map[string]interface{}, script string) (*lua.LState, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.f), NRet: 0, Protect: true}, lua.LString(pair.n)); err != nil {
			l.Close()
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

var osFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, osFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), osFuncs))
	return 1
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	tbl := l.CheckTable(1)
	field := func(k string, d int) int {
		if n, ok := tbl.RawGetString(k).(lua.LNumber); ok {
			return int(n)
		}
		return d
	}
	t := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(t.Unix()))
	return 1
}

// osDate supports what robofleet's scripts could need: no argument, or "!%Y-%m-%dT%H:%M:%SZ"-style
// formats with the flags Argo CD's safe os maps.
func osDate(l *lua.LState) int {
	t := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			t = t.UTC()
			format = strings.TrimPrefix(format, "!")
		}
	}
	flags := map[byte]string{'Y': "2006", 'm': "01", 'd': "02", 'H': "15", 'M': "04", 'S': "05", 'c': "02 Jan 06 15:04 MST"}
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] == '%' && i+1 < len(format) {
			if f, ok := flags[format[i+1]]; ok {
				b.WriteString(t.Format(f))
				i++
				continue
			}
		}
		b.WriteByte(format[i])
	}
	l.Push(lua.LString(b.String()))
	return 1
}

// decodeValue is Argo CD's conversion of an unstructured object into Lua values.
func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for k, item := range v {
			tbl.RawSetH(lua.LString(k), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

var validHealth = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

func health(encoded []byte) ([]byte, error) {
	var hs struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(encoded, &hs); err != nil {
		return nil, err
	}
	if !validHealth[hs.Status] {
		hs.Status, hs.Message = "Unknown", "Lua returned an invalid health status"
	}
	return json.Marshal(hs)
}

type resourceAction struct {
	Name        string `json:"name"`
	Disabled    bool   `json:"disabled"`
	IconClass   string `json:"iconClass,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
}

func discovery(encoded []byte) ([]byte, error) {
	actions := []resourceAction{}
	if string(encoded) != "[]" {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(encoded, &m); err != nil {
			return nil, err
		}
		for name, raw := range m {
			a := resourceAction{Name: name}
			if raw[0] == '{' {
				if err := json.Unmarshal(raw, &a); err != nil {
					return nil, fmt.Errorf("action %s: %w", name, err)
				}
				a.Name = name
			}
			actions = append(actions, a)
		}
	}
	sort.Slice(actions, func(i, j int) bool { return actions[i].Name < actions[j].Name })
	return json.Marshal(actions)
}

func action(encoded []byte, original map[string]interface{}) ([]byte, error) {
	s := string(encoded)
	if len(s) < 2 || s[0] != '{' {
		return nil, fmt.Errorf("robofleet actions return the patched object, got %.80s", s)
	}
	var obj map[string]interface{}
	if err := json.Unmarshal(encoded, &obj); err != nil {
		return nil, err
	}
	// Compare with the original as decoded from JSON (float64 numbers), as Argo CD's patch does.
	var orig map[string]interface{}
	b, _ := json.Marshal(original)
	_ = json.Unmarshal(b, &orig)
	return json.Marshal(cleanReturnedObj(obj, orig))
}

// cleanReturnedObj is Argo CD's: Lua cannot tell an empty map from an empty array, and gopher-json
// encodes an empty table as [], so an empty map of the original object must stay a map.
func cleanReturnedObj(newObj, obj map[string]interface{}) map[string]interface{} {
	for key, oldValue := range obj {
		newValue, ok := newObj[key]
		if !ok {
			continue
		}
		switch nv := newValue.(type) {
		case map[string]interface{}:
			if ov, ok := oldValue.(map[string]interface{}); ok {
				newObj[key] = cleanReturnedObj(nv, ov)
			}
		case []interface{}:
			switch ov := oldValue.(type) {
			case map[string]interface{}:
				if len(nv) == 0 {
					newObj[key] = ov
				}
			case []interface{}:
				newObj[key] = cleanReturnedArray(nv, ov)
			}
		}
	}
	return newObj
}

func cleanReturnedArray(newObj, obj []interface{}) []interface{} {
	for i := range newObj {
		if i >= len(obj) {
			break
		}
		switch nv := newObj[i].(type) {
		case map[string]interface{}:
			if ov, ok := obj[i].(map[string]interface{}); ok {
				newObj[i] = cleanReturnedObj(nv, ov)
			}
		case []interface{}:
			if ov, ok := obj[i].([]interface{}); ok {
				newObj[i] = cleanReturnedArray(nv, ov)
			}
		}
	}
	return newObj
}
