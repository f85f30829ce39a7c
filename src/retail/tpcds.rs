//! TPC-DS `store_sales`, the shape of a retailer's sales lines that the
//! benchmarks and the upload examples use: 23 columns, 11 integers and 12
//! `decimal(7,2)` amounts, keyed by item and ticket.

/// The integer columns, in TPC-DS order.
pub const STORE_SALES_INTEGERS: [&str; 11] = [
    "ss_sold_date_sk",
    "ss_sold_time_sk",
    "ss_item_sk",
    "ss_customer_sk",
    "ss_cdemo_sk",
    "ss_hdemo_sk",
    "ss_addr_sk",
    "ss_store_sk",
    "ss_promo_sk",
    "ss_ticket_number",
    "ss_quantity",
];

/// The `decimal(7,2)` amount columns, in TPC-DS order.
pub const STORE_SALES_AMOUNTS: [&str; 12] = [
    "ss_wholesale_cost",
    "ss_list_price",
    "ss_sales_price",
    "ss_ext_discount_amt",
    "ss_ext_sales_price",
    "ss_ext_wholesale_cost",
    "ss_ext_list_price",
    "ss_ext_tax",
    "ss_coupon_amt",
    "ss_net_paid",
    "ss_net_paid_inc_tax",
    "ss_net_profit",
];

/// The primary key: an item sold on a ticket.
pub const STORE_SALES_KEY: [&str; 2] = ["ss_item_sk", "ss_ticket_number"];
