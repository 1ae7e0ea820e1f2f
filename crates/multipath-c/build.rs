//! The shared library's soname carries the ABI's major version: a program
//! linked against libmultipath_c.so.1 never loads an incompatible one.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmultipath_c.so.1");
}
