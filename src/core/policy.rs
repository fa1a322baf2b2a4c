//! Service promises as arithmetic and rules, from the support article: when
//! a response is due, until when a refund claim can be made, and what a
//! buyer still has to send for their kind of problem.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::extract::{Category, Facts, IssueType};

/// The moment by which a buyer has been promised a response.
pub fn response_due(received: DateTime<Utc>, response_hours: u32) -> DateTime<Utc> {
    received + Duration::hours(i64::from(response_hours))
}

/// Days after delivery a claim may be made: 7 for sports cards, TCG,
/// sneakers & streetwear and coins & money; 14 for everything else.
pub fn delivery_window_days(category: Category) -> i64 {
    match category {
        Category::SportsCards
        | Category::Tcg
        | Category::SneakersStreetwear
        | Category::CoinsMoney => 7,
        Category::Other => 14,
    }
}

pub const PURCHASE_WINDOW_DAYS: i64 = 30;

/// The last day a refund claim can reach support: N days after delivery or
/// 30 after purchase, whichever comes first. `None` when the category or
/// both dates are unknown.
pub fn claim_deadline(
    category: Option<Category>,
    purchase: Option<NaiveDate>,
    delivery: Option<NaiveDate>,
) -> Option<NaiveDate> {
    let category = category?;
    let by_delivery = delivery.map(|d| d + Duration::days(delivery_window_days(category)));
    let by_purchase = purchase.map(|p| p + Duration::days(PURCHASE_WINDOW_DAYS));
    match (by_delivery, by_purchase) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Something the buyer has not given yet, in the order the ack lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    OrderNumber,
    ShipmentNumber,
    AccountEmail,
    Username,
    PhotosDamage,
    PhotosBox,
    PhotosPacking,
    DifferenceDescription,
    PhotosReceived,
    ExpectedProductDescription,
    PurchaseDate,
    Details,
}

/// What the ticket knows so far, across all of the buyer's messages.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub order_numbers: usize,
    pub shipment_numbers: usize,
    pub account_email: bool,
    pub username: bool,
    pub photos: usize,
    pub purchase_date: bool,
    /// Words the buyer wrote in their own new text.
    pub words: usize,
}

impl Known {
    pub fn from_facts(f: &Facts, photos: usize, words: usize) -> Known {
        Known {
            order_numbers: f.order_numbers.len(),
            shipment_numbers: f.shipment_numbers.len(),
            account_email: f.account_email.is_some(),
            username: f.username.is_some(),
            photos,
            purchase_date: f.purchase_date.is_some(),
            words,
        }
    }
}

/// A description shorter than this is not yet a description.
const DESCRIPTION_WORDS: usize = 40;

/// What the ack asks for, per the article: every order problem needs the
/// shipment number, order number, account e-mail and username; damage needs
/// the photo set and how the item differs from the listing; a missing item
/// needs photos of what came and a description of what should have; a delay
/// needs the purchase date. Account and general questions: details.
pub fn missing_info(issue: IssueType, known: &Known) -> Vec<Missing> {
    let mut out = Vec::new();
    if issue.is_order_issue() {
        if known.order_numbers == 0 {
            out.push(Missing::OrderNumber);
        }
        if known.shipment_numbers == 0 {
            out.push(Missing::ShipmentNumber);
        }
        if !known.account_email {
            out.push(Missing::AccountEmail);
        }
        if !known.username {
            out.push(Missing::Username);
        }
    }
    match issue {
        IssueType::Damaged => {
            if known.photos == 0 {
                out.extend([
                    Missing::PhotosDamage,
                    Missing::PhotosBox,
                    Missing::PhotosPacking,
                ]);
            }
            if known.words < DESCRIPTION_WORDS {
                out.push(Missing::DifferenceDescription);
            }
        }
        IssueType::Missing => {
            if known.photos == 0 {
                out.push(Missing::PhotosReceived);
            }
            if known.words < DESCRIPTION_WORDS {
                out.push(Missing::ExpectedProductDescription);
            }
        }
        IssueType::Delayed => {
            if !known.purchase_date {
                out.push(Missing::PurchaseDate);
            }
        }
        IssueType::Account | IssueType::General => {
            if known.words < DESCRIPTION_WORDS {
                out.push(Missing::Details);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn due_is_received_plus_hours() {
        let r = Utc.with_ymd_and_hms(2026, 11, 24, 13, 3, 0).unwrap();
        assert_eq!(
            response_due(r, 48),
            Utc.with_ymd_and_hms(2026, 11, 26, 13, 3, 0).unwrap()
        );
    }

    #[test]
    fn claim_windows_whichever_first() {
        // TCG: 7 days after delivery beats 30 after purchase.
        assert_eq!(
            claim_deadline(
                Some(Category::Tcg),
                Some(d(2026, 11, 1)),
                Some(d(2026, 11, 10))
            ),
            Some(d(2026, 11, 17))
        );
        // Other: 14 after delivery would be Dec 8, 30 after purchase is Nov 30.
        assert_eq!(
            claim_deadline(
                Some(Category::Other),
                Some(d(2026, 10, 31)),
                Some(d(2026, 11, 24))
            ),
            Some(d(2026, 11, 30))
        );
        assert_eq!(
            claim_deadline(Some(Category::CoinsMoney), None, Some(d(2026, 11, 24))),
            Some(d(2026, 12, 1))
        );
        assert_eq!(
            claim_deadline(Some(Category::Other), Some(d(2026, 11, 1)), None),
            Some(d(2026, 12, 1))
        );
        assert_eq!(claim_deadline(None, Some(d(2026, 11, 1)), None), None);
        assert_eq!(claim_deadline(Some(Category::Tcg), None, None), None);
    }

    #[test]
    fn asks_only_for_what_is_missing() {
        let nothing = Known::default();
        assert_eq!(
            missing_info(IssueType::Damaged, &nothing),
            vec![
                Missing::OrderNumber,
                Missing::ShipmentNumber,
                Missing::AccountEmail,
                Missing::Username,
                Missing::PhotosDamage,
                Missing::PhotosBox,
                Missing::PhotosPacking,
                Missing::DifferenceDescription
            ]
        );
        let given = Known {
            order_numbers: 1,
            shipment_numbers: 1,
            account_email: true,
            username: true,
            photos: 3,
            purchase_date: true,
            words: 80,
        };
        assert!(missing_info(IssueType::Damaged, &given).is_empty());
        assert!(missing_info(IssueType::Missing, &given).is_empty());
        assert!(missing_info(IssueType::Delayed, &given).is_empty());
        assert_eq!(
            missing_info(
                IssueType::Delayed,
                &Known {
                    purchase_date: false,
                    ..given.clone()
                }
            ),
            vec![Missing::PurchaseDate]
        );
        assert_eq!(
            missing_info(
                IssueType::Missing,
                &Known {
                    photos: 0,
                    ..given.clone()
                }
            ),
            vec![Missing::PhotosReceived]
        );
        assert_eq!(
            missing_info(IssueType::Account, &nothing),
            vec![Missing::Details]
        );
    }
}
