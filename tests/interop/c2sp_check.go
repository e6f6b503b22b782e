// Command c2sp_check answers interoperability questions about auditseal's logs with an
// independent implementation: Go's golang.org/x/mod/sumdb/note (C2SP signed notes, Ed25519) and
// golang.org/x/mod/sumdb/tlog (RFC 6962 / RFC 9162 Merkle trees and proofs).
//
// It reads a JSON array of requests on stdin and writes a JSON array of answers, in the same
// order, on stdout. Every answer has "ok" (the check passed / the operation succeeded) and, when
// not ok, "error". Hashes are lowercase hex. Operations:
//
//	{"op": "open", "note": NOTE, "keys": [VKEY...]}
//	    note.Open with note.VerifierList(note.NewVerifier(VKEY)...)
//	    -> "text", "signers" (name+hex key hash of verified signatures), "unverified"
//	{"op": "inclusion", "proof": [HEX...], "size": T, "root": HEX, "index": N, "leaf_hash": HEX}
//	    tlog.CheckRecord(proof, T, root, N, leaf_hash)
//	{"op": "consistency", "proof": [HEX...], "old_size": N, "old_root": HEX,
//	 "new_size": T, "new_root": HEX}
//	    tlog.CheckTree(proof, T, new_root, N, old_root)
//	{"op": "sign", "name": NAME, "text": TEXT}          note.GenerateKey + note.Sign
//	{"op": "sign", "private_key": SKEY, "text": TEXT}   note.NewSigner(SKEY) + note.Sign
//	    -> "private_key", "verifier_key", "note"
//	{"op": "key", "private_key": SKEY}
//	    note.NewSigner(SKEY), then the verifier key of its seed's public key via
//	    note.NewEd25519VerifierKey -> "name", "key_hash", "verifier_key"
//	{"op": "checkpoint", "text": BODY}
//	    strict C2SP tlog-checkpoint body parse -> "origin", "size", "root", "extensions";
//	    the size and root are also cross-checked with tlog.ParseTree
//	{"op": "tree", "leaves": [HEX...], "inclusion": [[N, T]...], "consistency": [[N, T]...]}
//	    tlog.RecordHash of every leaf, tlog.TreeHash of every size 1..len(leaves) ("roots",
//	    roots[i] is the root of size i+1), tlog.ProveRecord / tlog.ProveTree for the pairs
//	    -> "leaf_hashes", "roots", "inclusion_proofs", "consistency_proofs"
//
// Build in GOPATH mode against the Debian package golang-golang-x-mod-dev:
//
//	GO111MODULE=off GOPATH=$tmp:/usr/share/gocode go build -o c2sp_check c2sp_check.go
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	Op  string `json:"op"`
	Log string `json:"log"` // informative (auditseal's proof JSON carries it), ignored

	// open
	Note string   `json:"note"`
	Keys []string `json:"keys"`

	// inclusion
	Proof    []string `json:"proof"`
	Size     int64    `json:"size"`
	Root     string   `json:"root"`
	Index    int64    `json:"index"`
	LeafHash string   `json:"leaf_hash"`

	// consistency
	OldSize int64  `json:"old_size"`
	OldRoot string `json:"old_root"`
	NewSize int64  `json:"new_size"`
	NewRoot string `json:"new_root"`

	// sign, key, checkpoint
	Name       string `json:"name"`
	Text       string `json:"text"`
	PrivateKey string `json:"private_key"`

	// tree
	Leaves      []string   `json:"leaves"`
	Inclusion   [][2]int64 `json:"inclusion"`
	Consistency [][2]int64 `json:"consistency"`
}

type answer map[string]interface{}

func fail(err error) answer { return answer{"ok": false, "error": err.Error()} }

func parseHash(what, s string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != tlog.HashSize {
		return h, fmt.Errorf("%s: want %d bytes of hex, got %q", what, tlog.HashSize, s)
	}
	copy(h[:], raw)
	return h, nil
}

func parseHashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, len(list))
	for i, s := range list {
		h, err := parseHash(fmt.Sprintf("proof[%d]", i), s)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func hexHashes(list []tlog.Hash) []string {
	out := make([]string, 0, len(list))
	for _, h := range list {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

func doOpen(r request) answer {
	var verifiers []note.Verifier
	for _, k := range r.Keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return fail(fmt.Errorf("verifier key %q: %v", k, err))
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open([]byte(r.Note), note.VerifierList(verifiers...))
	if err != nil {
		return answer{"ok": false, "error": err.Error(), "error_type": fmt.Sprintf("%T", err)}
	}
	signers := []string{}
	for _, s := range n.Sigs {
		signers = append(signers, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	unverified := []string{}
	for _, s := range n.UnverifiedSigs {
		unverified = append(unverified, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	return answer{"ok": true, "text": n.Text, "signers": signers, "unverified": unverified}
}

func doInclusion(r request) answer {
	proof, err := parseHashes(r.Proof)
	if err != nil {
		return fail(err)
	}
	root, err := parseHash("root", r.Root)
	if err != nil {
		return fail(err)
	}
	leaf, err := parseHash("leaf_hash", r.LeafHash)
	if err != nil {
		return fail(err)
	}
	if err := tlog.CheckRecord(tlog.RecordProof(proof), r.Size, root, r.Index, leaf); err != nil {
		return fail(err)
	}
	return answer{"ok": true}
}

func doConsistency(r request) answer {
	proof, err := parseHashes(r.Proof)
	if err != nil {
		return fail(err)
	}
	oldRoot, err := parseHash("old_root", r.OldRoot)
	if err != nil {
		return fail(err)
	}
	newRoot, err := parseHash("new_root", r.NewRoot)
	if err != nil {
		return fail(err)
	}
	err = tlog.CheckTree(tlog.TreeProof(proof), r.NewSize, newRoot, r.OldSize, oldRoot)
	if err != nil {
		return fail(err)
	}
	return answer{"ok": true}
}

func doSign(r request) answer {
	skey := r.PrivateKey
	vkey := ""
	if skey == "" {
		var err error
		skey, vkey, err = note.GenerateKey(rand.Reader, r.Name)
		if err != nil {
			return fail(err)
		}
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return fail(fmt.Errorf("private key: %v", err))
	}
	msg, err := note.Sign(&note.Note{Text: r.Text}, signer)
	if err != nil {
		return fail(err)
	}
	return answer{"ok": true, "private_key": skey, "verifier_key": vkey, "note": string(msg)}
}

// doKey loads a private key with note.NewSigner (which checks the key hash against the public
// key it derives) and returns the verifier key Go computes for the same name and public key.
func doKey(r request) answer {
	signer, err := note.NewSigner(r.PrivateKey)
	if err != nil {
		return fail(fmt.Errorf("private key: %v", err))
	}
	// note has no exported "verifier key of a private key"; take the seed out of the last field
	// (NewSigner has just validated the whole string) and let NewEd25519VerifierKey do the rest.
	fields := strings.SplitN(r.PrivateKey, "+", 5) // PRIVATE+KEY+name+hash+base64(key)
	raw, err := base64.StdEncoding.DecodeString(fields[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return fail(errors.New("private key: not an Ed25519 seed"))
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return fail(err)
	}
	return answer{
		"ok":           true,
		"name":         signer.Name(),
		"key_hash":     fmt.Sprintf("%08x", signer.KeyHash()),
		"verifier_key": vkey,
	}
}

// doCheckpoint parses a C2SP tlog-checkpoint body: origin line, tree size in decimal without
// leading zeros, root hash in standard padded base64, optional non-empty extension lines; every
// line ends with a newline.
func doCheckpoint(r request) answer {
	text := r.Text
	if !utf8.ValidString(text) {
		return fail(errors.New("checkpoint: not UTF-8"))
	}
	if !strings.HasSuffix(text, "\n") {
		return fail(errors.New("checkpoint: must end with a newline"))
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return fail(fmt.Errorf("checkpoint: want at least 3 lines, got %d", len(lines)))
	}
	origin, sizeText, rootText, extensions := lines[0], lines[1], lines[2], lines[3:]
	if origin == "" {
		return fail(errors.New("checkpoint: empty origin"))
	}
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != sizeText {
		return fail(fmt.Errorf("checkpoint: size %q is not a canonical decimal", sizeText))
	}
	root, err := base64.StdEncoding.Strict().DecodeString(rootText)
	if err != nil || len(root) != tlog.HashSize ||
		base64.StdEncoding.EncodeToString(root) != rootText {
		return fail(fmt.Errorf("checkpoint: root %q is not %d bytes of base64", rootText, tlog.HashSize))
	}
	for i, ext := range extensions {
		if ext == "" {
			return fail(fmt.Errorf("checkpoint: extension line %d is empty", i+1))
		}
	}
	// Cross-check with the library's parser of the same three-line shape (it only knows the
	// go.sum origin line, so swap ours for it).
	tree, err := tlog.ParseTree([]byte("go.sum database tree\n" + sizeText + "\n" + rootText + "\n"))
	if err != nil {
		return fail(fmt.Errorf("checkpoint: tlog.ParseTree: %v", err))
	}
	if uint64(tree.N) != size || !bytes.Equal(tree.Hash[:], root) {
		return fail(errors.New("checkpoint: tlog.ParseTree disagrees with the strict parse"))
	}
	if extensions == nil {
		extensions = []string{}
	}
	return answer{
		"ok":         true,
		"origin":     origin,
		"size":       size,
		"root":       hex.EncodeToString(root),
		"extensions": extensions,
	}
}

// doTree builds the tree of the given leaves with tlog's own storage layout and answers roots
// and proofs from it, independently of auditseal's node store.
func doTree(r request) answer {
	var stored []tlog.Hash
	leafHashes := make([]string, 0, len(r.Leaves))
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(stored)) {
				return nil, fmt.Errorf("stored hash %d out of range", x)
			}
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, s := range r.Leaves {
		data, err := hex.DecodeString(s)
		if err != nil {
			return fail(fmt.Errorf("leaf %d: not hex", i))
		}
		h := tlog.RecordHash(data)
		leafHashes = append(leafHashes, hex.EncodeToString(h[:]))
		more, err := tlog.StoredHashes(int64(i), data, reader)
		if err != nil {
			return fail(err)
		}
		stored = append(stored, more...)
	}
	roots := make([]string, 0, len(r.Leaves))
	for n := int64(1); n <= int64(len(r.Leaves)); n++ {
		h, err := tlog.TreeHash(n, reader)
		if err != nil {
			return fail(err)
		}
		roots = append(roots, hex.EncodeToString(h[:]))
	}
	inclusion := make([][]string, 0, len(r.Inclusion))
	for _, pair := range r.Inclusion {
		p, err := tlog.ProveRecord(pair[1], pair[0], reader)
		if err != nil {
			return fail(fmt.Errorf("ProveRecord(%d, %d): %v", pair[1], pair[0], err))
		}
		inclusion = append(inclusion, hexHashes(p))
	}
	consistency := make([][]string, 0, len(r.Consistency))
	for _, pair := range r.Consistency {
		p, err := tlog.ProveTree(pair[1], pair[0], reader)
		if err != nil {
			return fail(fmt.Errorf("ProveTree(%d, %d): %v", pair[1], pair[0], err))
		}
		consistency = append(consistency, hexHashes(p))
	}
	return answer{
		"ok":                 true,
		"leaf_hashes":        leafHashes,
		"roots":              roots,
		"inclusion_proofs":   inclusion,
		"consistency_proofs": consistency,
	}
}

func handle(r request) answer {
	switch r.Op {
	case "open":
		return doOpen(r)
	case "inclusion":
		return doInclusion(r)
	case "consistency":
		return doConsistency(r)
	case "sign":
		return doSign(r)
	case "key":
		return doKey(r)
	case "checkpoint":
		return doCheckpoint(r)
	case "tree":
		return doTree(r)
	}
	return fail(fmt.Errorf("unknown op %q", r.Op))
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "c2sp_check: reading stdin:", err)
		os.Exit(2)
	}
	var requests []request
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&requests); err != nil {
		fmt.Fprintln(os.Stderr, "c2sp_check: want a JSON array of requests:", err)
		os.Exit(2)
	}
	answers := make([]answer, 0, len(requests))
	for _, r := range requests {
		answers = append(answers, handle(r))
	}
	if err := json.NewEncoder(os.Stdout).Encode(answers); err != nil {
		fmt.Fprintln(os.Stderr, "c2sp_check: writing stdout:", err)
		os.Exit(2)
	}
}
