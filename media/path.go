package media

// ContentPath is where a Library with Dir dir keeps the file of the
// content with digest sum (lower-case hex SHA256), when it keeps files in
// Dir (no Blobs). mailgate store migrate reads the files from there.
func ContentPath(dir, sum string) string {
	return (&Library{dir: dir}).filePath(sum)
}
