//! Tiny boot-sector guests for tests that run real QEMU.
//!
//! A real OS takes seconds to boot under TCG and is not installed here; a 512-byte boot
//! sector reaches its first instruction in ~0.1 s and can do exactly one thing a test
//! wants to observe: power off through ACPI, wait for the power button, panic through
//! pvpanic, reset through the reset control register, exit QEMU through
//! isa-debug-exit, or fill memory and count forever (for save/migration tests). Each
//! guest first prints a line on COM1, so a test with a serial log knows it runs.
//!
//! The sectors are assembled on the spot with binutils (`as --32`, `ld -m elf_i386
//! --oformat binary`), then padded to a 1 MiB raw image (SeaBIOS refuses a bare
//! 512-byte disk). Images are cached per kind in the caller's directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the guest does once booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestGuest {
    /// Prints a line and halts forever.
    Halt,
    /// Powers off at once through ACPI (QEMU: `SHUTDOWN`, guest-initiated).
    Shutdown,
    /// Arms the ACPI power button, prints `waiting for power button`, and powers off
    /// when it is pressed (`system_powerdown`).
    WaitPowerButton,
    /// Reports a panic on the ISA pvpanic port (needs the pvpanic device).
    Panic,
    /// Resets the machine through port 0xcf9 (QEMU: `RESET`, guest-initiated); it
    /// does so again on every boot.
    Reset,
    /// Writes 0x10 to isa-debug-exit at 0xf4 (QEMU exits with status 33).
    DebugExit,
    /// Enters protected mode, writes one dword into every 4 KiB page from 1 MiB up to
    /// `fill_end` (bytes; keep it below the guest's RAM), prints `filled`, then prints
    /// a rolling digit forever.
    Fill {
        /// End of the filled range, in bytes.
        fill_end: u32,
    },
}

impl TestGuest {
    /// The line the guest prints on COM1 once it is ready for the test to act.
    pub fn ready_line(self) -> &'static str {
        match self {
            TestGuest::WaitPowerButton => "waiting for power button",
            TestGuest::Fill { .. } => "filled",
            _ => "hello from boot sector",
        }
    }

    fn file_stem(self) -> String {
        match self {
            TestGuest::Fill { fill_end } => format!("fill-{fill_end:08x}"),
            other => format!("boot-{}", other.mode() as char),
        }
    }

    fn mode(self) -> u8 {
        match self {
            TestGuest::Halt => b'H',
            TestGuest::Shutdown => b'S',
            TestGuest::WaitPowerButton => b'W',
            TestGuest::Panic => b'P',
            TestGuest::Reset => b'R',
            TestGuest::DebugExit => b'X',
            TestGuest::Fill { .. } => 0,
        }
    }
}

/// Offset of the mode byte in the event sector.
const MODE_OFFSET: usize = 509;
/// Offset of the little-endian fill end in the fill sector.
const FILL_END_OFFSET: usize = 504;
/// Image size SeaBIOS is happy to boot from.
const IMAGE_SIZE: usize = 1 << 20;

/// The event sector: prints a greeting, then dispatches on the mode byte at 509.
const EVENT_SECTOR: &str = r#"
    .intel_syntax noprefix
    .code16
    .globl _start
_start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov si, offset greeting
    call print
    mov al, byte ptr [mode]
    cmp al, 'S'
    je do_poweroff
    cmp al, 'W'
    je do_wait_button
    cmp al, 'P'
    je do_panic
    cmp al, 'R'
    je do_reset
    cmp al, 'X'
    je do_debug_exit
    jmp stay
do_poweroff:            /* PM1a control block at 0x604 (SeaBIOS: PM base 0x600): SLP_EN, type 0 */
    mov si, offset txt_poweroff
    call print
    mov dx, 0x604
    mov ax, 0x2000
    out dx, ax
    jmp stay
do_wait_button:         /* enable PWRBTN in PM1a_EN (0x602), poll PWRBTN_STS in PM1a_STS (0x600) */
    mov dx, 0x602
    mov ax, 0x0100
    out dx, ax
    mov si, offset txt_waiting
    call print
poll_button:
    mov dx, 0x600
    in ax, dx
    test ax, 0x0100
    jz poll_button
    mov si, offset txt_pressed
    call print
    jmp do_poweroff
do_panic:               /* ISA pvpanic port: bit 0 means "panicked" */
    mov si, offset txt_panic
    call print
    mov dx, 0x505
    mov al, 1
    out dx, al
    jmp stay
do_reset:               /* reset control register: full reset */
    mov si, offset txt_reset
    call print
    mov dx, 0xcf9
    mov al, 0x06
    out dx, al
    jmp stay
do_debug_exit:          /* isa-debug-exit: QEMU exits with (value << 1) | 1 */
    mov dx, 0xf4
    mov al, 0x10
    out dx, al
stay:
    hlt
    jmp stay
print:                  /* NUL-terminated string at ds:si to COM1 */
    mov dx, 0x3f8
print_next:
    lodsb
    test al, al
    jz print_done
    out dx, al
    jmp print_next
print_done:
    ret
greeting:     .asciz "hello from boot sector\r\n"
txt_poweroff: .asciz "acpi poweroff\r\n"
txt_waiting:  .asciz "waiting for power button\r\n"
txt_pressed:  .asciz "power button pressed\r\n"
txt_panic:    .asciz "pvpanic\r\n"
txt_reset:    .asciz "reset\r\n"
    . = _start + 509
mode: .byte 'H'
    .word 0xaa55
"#;

/// The memory-filling sector: protected mode, one dword per page, then a counter.
const FILL_SECTOR: &str = r#"
    .intel_syntax noprefix
    .code16
    .globl _start
_start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    in al, 0x92         /* fast A20 */
    or al, 2
    out 0x92, al
    lgdt [gdt_desc]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    ljmp 0x08, offset prot32
    .code32
prot32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7c00
    mov edi, 0x100000
    mov ebx, dword ptr [fill_end]
touch_page:
    mov dword ptr [edi], edi
    mov dword ptr [edi+4], 0xdeadbeef
    add edi, 4096
    cmp edi, ebx
    jb touch_page
    mov esi, offset txt_filled
    mov dx, 0x3f8
say:
    lodsb
    test al, al
    jz count_start
    out dx, al
    jmp say
count_start:
    mov bl, '0'
count_digit:
    mov ecx, 0x2000000
spin:
    dec ecx
    jnz spin
    mov al, bl
    out dx, al
    inc bl
    cmp bl, '9' + 1
    jne count_digit
    mov bl, '0'
    jmp count_digit
    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* flat 32-bit code */
    .quad 0x00cf92000000ffff    /* flat 32-bit data */
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt
txt_filled: .asciz "filled\r\n"
    . = _start + 504
fill_end: .long 0x03f00000
    . = _start + 510
    .word 0xaa55
"#;

/// The libvirt definition of a q35 test guest: `name`, `ram_mib` MiB, one vCPU, booting
/// the raw image `img` from a SATA disk, COM1 logged to `serial`, `<features>` holding
/// `features` (none when empty) and `extra_devices` after the serial port. The tests of
/// the drivers and of the daemon share it so that their guests are the same machine.
pub fn domain_xml(
    name: &str,
    ram_mib: u32,
    features: &str,
    img: &Path,
    serial: &Path,
    extra_devices: &str,
) -> String {
    let features = if features.is_empty() {
        String::new()
    } else {
        format!("\n  <features>{features}</features>")
    };
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{ram_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type><boot dev='hd'/></os>{features}
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{img}'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    {extra_devices}
  </devices>
</domain>",
        img = img.display(),
        serial = serial.display(),
    )
}

/// Whether the assembler and linker the guests need are installed.
pub fn tools_available() -> bool {
    ["as", "ld"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// Returns the 1 MiB raw disk image of guest `kind` in `dir`, building it on first use.
pub fn build(dir: &Path, kind: TestGuest) -> io::Result<PathBuf> {
    let image = dir.join(format!("{}.img", kind.file_stem()));
    if image.exists() {
        return Ok(image);
    }
    let (source, base) = match kind {
        TestGuest::Fill { .. } => (FILL_SECTOR, "fill"),
        _ => (EVENT_SECTOR, "event"),
    };
    let mut sector = assemble(dir, base, source)?;
    if sector.len() != 512 || sector[510..] != [0x55, 0xaa] {
        return Err(io::Error::other(format!(
            "assembled boot sector is {} bytes without a boot signature",
            sector.len()
        )));
    }
    match kind {
        TestGuest::Fill { fill_end } => {
            sector[FILL_END_OFFSET..FILL_END_OFFSET + 4].copy_from_slice(&fill_end.to_le_bytes())
        }
        other => sector[MODE_OFFSET] = other.mode(),
    }
    sector.resize(IMAGE_SIZE, 0);
    // Concurrent builders each write their own file; the rename makes one win whole.
    let tmp = dir.join(format!(".{}.{}.tmp", kind.file_stem(), unique()));
    std::fs::write(&tmp, &sector)?;
    std::fs::rename(&tmp, &image)?;
    Ok(image)
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Assembles and links `source` into a flat binary loaded at 0x7c00.
fn assemble(dir: &Path, base: &str, source: &str) -> io::Result<Vec<u8>> {
    let tag = unique();
    let src = dir.join(format!(".{base}.{tag}.S"));
    let obj = dir.join(format!(".{base}.{tag}.o"));
    let bin = dir.join(format!(".{base}.{tag}.bin"));
    std::fs::write(&src, source)?;
    let result = (|| {
        run(Command::new("as").arg("--32").arg("-o").arg(&obj).arg(&src))?;
        run(Command::new("ld")
            .args([
                "-m",
                "elf_i386",
                "-Ttext",
                "0x7c00",
                "--oformat",
                "binary",
                "-o",
            ])
            .arg(&bin)
            .arg(&obj))?;
        std::fs::read(&bin)
    })();
    for f in [&src, &obj, &bin] {
        let _ = std::fs::remove_file(f);
    }
    result
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn require_tools() -> bool {
        if tools_available() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "binutils (as, ld) missing under CI"
        );
        eprintln!("skipping: binutils (as, ld) not installed");
        false
    }

    #[test]
    fn builds_patched_images_and_caches_them() {
        if !require_tools() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = build(dir.path(), TestGuest::Shutdown).unwrap();
        let data = std::fs::read(&s).unwrap();
        assert_eq!(data.len(), IMAGE_SIZE);
        assert_eq!(data[MODE_OFFSET], b'S');
        assert_eq!(&data[510..512], &[0x55, 0xaa]);
        assert!(data[512..].iter().all(|b| *b == 0));
        let p = build(dir.path(), TestGuest::Panic).unwrap();
        assert_ne!(s, p);
        assert_eq!(std::fs::read(&p).unwrap()[MODE_OFFSET], b'P');
        // The greeting is in the sector.
        let text = String::from_utf8_lossy(&data[..512]).into_owned();
        assert!(text.contains("hello from boot sector"));

        let f = build(
            dir.path(),
            TestGuest::Fill {
                fill_end: 0x0200_0000,
            },
        )
        .unwrap();
        let fd = std::fs::read(&f).unwrap();
        assert_eq!(
            &fd[FILL_END_OFFSET..FILL_END_OFFSET + 4],
            &0x0200_0000u32.to_le_bytes()
        );
        assert_eq!(&fd[510..512], &[0x55, 0xaa]);

        // Cached: a second build returns the same file without rebuilding.
        let before = std::fs::metadata(&s).unwrap().modified().unwrap();
        assert_eq!(build(dir.path(), TestGuest::Shutdown).unwrap(), s);
        assert_eq!(std::fs::metadata(&s).unwrap().modified().unwrap(), before);
        // No temporary files left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }
}
