//! Finding a code point's instructions in a program's executable, at replay time: a schedule
//! names `piano@store(piano::FORCE_KILLED, run_child::{{closure}})`, not an address that changes
//! with every build.
//!
//! How: the ELF symbol table (the `object` crate) gives the global's address and size and the
//! functions (their names demangled with `rustc-demangle`, without the hash); each matching
//! function's code is decoded instruction by instruction (`iced-x86`, a linear sweep from the
//! function's symbol, which is exact for compiled code), and every instruction that WRITES
//! memory inside the global through a RIP-relative operand is a store: `xchg [rip+d], al`
//! (what a `SeqCst` store compiles to), `mov byte [rip+d], 1`, `lock cmpxchg`... A store through
//! a register (a pointer to the global) is not found: name its address instead.
//!
//! Limits: x86-64 ELF only; the executable must keep its symbol table (not stripped); a
//! function inlined into another is found under the name of the function it was inlined into
//! (piano's thread closures live in `std::sys::backtrace::__rust_begin_short_backtrace<piano::
//! run_child::{{closure}}, ()>`, whose demangled name contains `run_child::{{closure}}`).

use std::path::{Path, PathBuf};

use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};
use racelab_hooks::{CodePoint, CodeSite};

/// One located instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Its ELF virtual address (for a PIE: the offset from the load base), as `objdump -d`
    /// prints it.
    pub address: u64,
    /// The function it is in, demangled without hash.
    pub function: String,
    /// The instruction: its mnemonic and bytes (`xchg 86 05 2e a5 30 00`).
    pub instruction: String,
}

/// Why a code point could not be located.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The executable could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It is not an ELF file this crate can parse.
    #[error("{path} is not a readable ELF file: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Code points are x86-64 only.
    #[error("{path}: code points need an x86-64 executable, this one is {arch}")]
    Architecture {
        /// The file.
        path: PathBuf,
        /// Its architecture.
        arch: String,
    },
    /// No symbol has that demangled name (or the binary is stripped).
    #[error("{path}: no symbol named `{global}` (is the binary stripped?)")]
    NoSymbol {
        /// The file.
        path: PathBuf,
        /// The global as written.
        global: String,
    },
    /// No function name contains the text.
    #[error("{path}: no function whose name contains `{within}`")]
    NoFunction {
        /// The file.
        path: PathBuf,
        /// The text.
        within: String,
    },
    /// No instruction of those functions stores to the global.
    #[error("{path}: no instruction stores to `{global}` in the functions named {within}")]
    NoStore {
        /// The file.
        path: PathBuf,
        /// The global.
        global: String,
        /// The functions looked at (`*`: all).
        within: String,
    },
    /// An address outside the executable's code.
    #[error("{path}: {address:#x} is not in an executable segment")]
    NotCode {
        /// The file.
        path: PathBuf,
        /// The address as written.
        address: u64,
    },
}

/// The executable's bytes, read once per replay.
#[derive(Debug)]
pub struct Executable {
    path: PathBuf,
    data: Vec<u8>,
}

impl Executable {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Executable, LocateError> {
        let data = std::fs::read(path)
            .map_err(|source| LocateError::Read { path: path.to_path_buf(), source })?;
        Ok(Executable { path: path.to_path_buf(), data })
    }

    fn parse(&self) -> Result<object::File<'_>, LocateError> {
        let file = object::File::parse(&*self.data)
            .map_err(|e| LocateError::Parse { path: self.path.clone(), reason: e.to_string() })?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(LocateError::Architecture {
                path: self.path.clone(),
                arch: format!("{:?}", file.architecture()),
            });
        }
        Ok(file)
    }

    /// The file offset of ELF virtual address `vaddr` (in a loaded segment).
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let file = self.parse().ok()?;
        file.segments().find_map(|seg| {
            let (offset, size) = seg.file_range();
            let start = seg.address();
            (vaddr >= start && vaddr < start + size).then(|| offset + (vaddr - start))
        })
    }

    /// The instructions of `point` (its address, or the stores it names).
    pub fn locate(&self, point: &CodePoint) -> Result<Vec<Located>, LocateError> {
        match point.site {
            CodeSite::Address(address) => self.at(address).map(|l| vec![l]),
            CodeSite::Store { global, within } => self.stores(global, within),
        }
    }

    fn at(&self, address: u64) -> Result<Located, LocateError> {
        let file = self.parse()?;
        let not_code = || LocateError::NotCode { path: self.path.clone(), address };
        let section = file
            .sections()
            .find(|s| {
                s.kind() == object::SectionKind::Text
                    && address >= s.address()
                    && address < s.address() + s.size()
            })
            .ok_or_else(not_code)?;
        let bytes = section
            .data_range(address, 16.min(section.address() + section.size() - address))
            .ok()
            .flatten()
            .ok_or_else(not_code)?;
        let function = file
            .symbols()
            .find(|s| {
                s.kind() == SymbolKind::Text
                    && address >= s.address()
                    && address < s.address() + s.size()
            })
            .and_then(|s| s.name().ok().map(demangled))
            .unwrap_or_default();
        let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
        let instruction = describe(&decoder.decode(), bytes, address);
        Ok(Located { address, function, instruction })
    }

    /// Every instruction that writes `global` through a RIP-relative operand, in the functions
    /// whose demangled name contains `within` (all functions when `None`), in address order.
    pub fn stores(&self, global: &str, within: Option<&str>) -> Result<Vec<Located>, LocateError> {
        let file = self.parse()?;
        let target = file
            .symbols()
            .find(|s| {
                s.kind() != SymbolKind::Text && s.name().is_ok_and(|n| demangled(n) == global)
            })
            .ok_or_else(|| LocateError::NoSymbol {
                path: self.path.clone(),
                global: global.to_string(),
            })?;
        let range = target.address()..target.address() + target.size().max(1);
        let mut functions = 0;
        let mut out = Vec::new();
        let mut info = InstructionInfoFactory::new();
        for f in file.symbols().filter(|s| s.kind() == SymbolKind::Text && s.size() > 0) {
            let Ok(raw) = f.name() else { continue };
            let name = demangled(raw);
            if within.is_some_and(|w| !name.contains(w)) {
                continue;
            }
            let Some(code) = f
                .section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .and_then(|s| s.data_range(f.address(), f.size()).ok().flatten())
            else {
                continue;
            };
            functions += 1;
            let mut decoder = Decoder::with_ip(64, code, f.address(), DecoderOptions::NONE);
            for ins in &mut decoder {
                if !ins.is_ip_rel_memory_operand() || !range.contains(&ins.ip_rel_memory_address())
                {
                    continue;
                }
                let writes = info.info(&ins).used_memory().iter().any(|m| {
                    matches!(
                        m.access(),
                        OpAccess::Write
                            | OpAccess::ReadWrite
                            | OpAccess::CondWrite
                            | OpAccess::ReadCondWrite
                    )
                });
                if writes {
                    out.push(Located {
                        address: ins.ip(),
                        function: name.clone(),
                        instruction: describe(&ins, code, f.address()),
                    });
                }
            }
        }
        let within_text = within.unwrap_or("*").to_string();
        if functions == 0 {
            return Err(LocateError::NoFunction { path: self.path.clone(), within: within_text });
        }
        if out.is_empty() {
            return Err(LocateError::NoStore {
                path: self.path.clone(),
                global: global.to_string(),
                within: within_text,
            });
        }
        out.sort_by_key(|l| l.address);
        out.dedup_by_key(|l| l.address);
        Ok(out)
    }
}

/// `point`'s instructions in the executable at `exe`: what races needs to resolve a schedule's
/// code point before a replay (and to say, in a report, which instructions it armed).
pub fn locate(exe: &Path, point: &CodePoint) -> Result<Vec<Located>, LocateError> {
    Executable::read(exe)?.locate(point)
}

/// `xchg 86 05 2e a5 30 00`: the mnemonic and the bytes of `ins`, decoded from `code` at `base`.
fn describe(ins: &iced_x86::Instruction, code: &[u8], base: u64) -> String {
    let start = (ins.ip() - base) as usize;
    let bytes = code.get(start..start + ins.len()).unwrap_or_default();
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} {}", format!("{:?}", ins.mnemonic()).to_lowercase(), hex.join(" "))
}

/// A symbol's name demangled without the hash (`piano::FORCE_KILLED`); a C name as is. A
/// suffix the optimizer appends to a renamed local symbol (`.0`, `.llvm.123`) is dropped.
fn demangled(raw: &str) -> String {
    let raw = raw.split_once(".llvm.").map_or(raw, |(base, _)| base);
    let raw = match raw.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => raw,
    };
    format!("{:#}", rustc_demangle::demangle(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_names_demangle_without_their_hash() {
        assert_eq!(demangled("_ZN5piano12FORCE_KILLED17hc958984556cb841fE"), "piano::FORCE_KILLED");
        assert_eq!(demangled("kill"), "kill");
        assert_eq!(
            demangled("_ZN5piano12FORCE_KILLED17hc958984556cb841fE.0"),
            "piano::FORCE_KILLED"
        );
        assert_eq!(demangled("_ZN1a1f17hc958984556cb841fE.llvm.12345"), "a::f");
    }

    #[test]
    fn this_test_binary_locates_a_store_to_its_own_global() {
        use std::sync::atomic::{AtomicBool, Ordering};
        static LOCATE_ME: AtomicBool = AtomicBool::new(false);
        #[inline(never)]
        fn store_it() {
            LOCATE_ME.store(true, Ordering::SeqCst);
        }
        store_it();
        assert!(LOCATE_ME.load(Ordering::SeqCst));
        let exe = std::env::current_exe().unwrap();
        let found = Executable::read(&exe)
            .unwrap()
            .stores("racelab_blackbox::locate::tests::this_test_binary_locates_a_store_to_its_own_global::LOCATE_ME", Some("store_it"))
            .unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].instruction.starts_with("xchg"), "{found:?}");
        assert!(found[0].function.ends_with("store_it"), "{found:?}");
    }

    #[test]
    fn a_missing_symbol_or_function_is_a_typed_error() {
        let exe = Executable::read(&std::env::current_exe().unwrap()).unwrap();
        assert!(matches!(exe.stores("no::SUCH_GLOBAL", None), Err(LocateError::NoSymbol { .. })));
        let err = exe.stores("racelab_blackbox::locate::tests::this_test_binary_locates_a_store_to_its_own_global::LOCATE_ME", Some("no_such_function_anywhere"));
        assert!(matches!(err, Err(LocateError::NoFunction { .. })), "{err:?}");
    }
}
