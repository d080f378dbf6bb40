//! CPU and memory amounts in Kubernetes quantity notation, checked once so both
//! runtimes can rely on them (the Kubernetes API as a string, Docker as numbers).

use std::fmt;

/// A CPU amount: `2`, `0.5` or `500m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    millicores: u64,
}

impl Cpu {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("'{text}' is not a CPU amount: use cores like 2 or 0.5, or millicores like 500m");
        let millicores = if let Some(milli) = text.strip_suffix('m') {
            milli.parse::<u64>().map_err(|_| bad())?
        } else {
            let cores: f64 = text.parse().map_err(|_| bad())?;
            if !cores.is_finite() || cores < 0.0 {
                return Err(bad());
            }
            // Rounded to whole millicores, Kubernetes' own precision for CPU.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let milli = (cores * 1000.0).round() as u64;
            milli
        };
        if millicores == 0 {
            return Err(format!("'{text}' is zero: leave it blank for no limit"));
        }
        Ok(Self { millicores })
    }

    pub fn nano_cpus(self) -> i64 {
        i64::try_from(self.millicores).unwrap_or(i64::MAX).saturating_mul(1_000_000)
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.millicores)
    }
}

/// A memory or storage size: `512Mi`, `2Gi`, `1G` or plain bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    bytes: u64,
}

const UNITS: [(&str, u64); 8] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

impl Memory {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad =
            || format!("'{text}' is not a size: use a number with Ki, Mi, Gi, Ti, k, M, G or T, like 512Mi or 4Gi");
        let (number, unit) =
            UNITS.iter().find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, *unit))).unwrap_or((text, 1));
        let bytes = number.parse::<u64>().map_err(|_| bad())?.checked_mul(unit).ok_or_else(bad)?;
        if bytes < 4 << 20 {
            return Err(format!("'{text}' is below 4Mi, too small for a container"));
        }
        Ok(Self { bytes })
    }

    pub fn bytes(self) -> i64 {
        i64::try_from(self.bytes).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_accepts_cores_and_millicores() {
        assert_eq!(Cpu::parse("2").unwrap().nano_cpus(), 2_000_000_000);
        assert_eq!(Cpu::parse("0.5").unwrap().to_string(), "500m");
        assert_eq!(Cpu::parse("250m").unwrap().nano_cpus(), 250_000_000);
        assert!(Cpu::parse("lots").is_err());
        assert!(Cpu::parse("-1").is_err());
        assert!(Cpu::parse("0").is_err());
    }

    #[test]
    fn memory_accepts_binary_and_decimal_units() {
        assert_eq!(Memory::parse("1Gi").unwrap().bytes(), 1 << 30);
        assert_eq!(Memory::parse("512Mi").unwrap().bytes(), 512 << 20);
        assert_eq!(Memory::parse("2G").unwrap().bytes(), 2_000_000_000);
        assert_eq!(Memory::parse("8388608").unwrap().bytes(), 8 << 20);
        assert!(Memory::parse("2X").is_err());
        assert!(Memory::parse("1Ki").is_err(), "too small");
        assert!(Memory::parse("99999999999Ti").is_err(), "overflow");
    }
}
